import { z } from 'zod';
import { stageCode } from '../events/schemas.js';
import { countryCode, isoDateTime, text } from '../http/schemas.js';

export const ORDER_STATUSES = ['open', 'on_hold', 'shipped', 'delivered', 'cancelled'] as const;
export const MAX_ROUTE_STEPS = 40;

const routeStep = z.strictObject({
  stage: stageCode,
  factoryId: z.uuid(),
  plannedHours: z.number().positive().max(2000),
  after: z.array(stageCode).max(MAX_ROUTE_STEPS).optional().describe('Earlier steps this one waits for; default: the step before it'),
});

export const createOrderBody = z
  .strictObject({
    customerId: z.uuid(),
    engineerId: z.uuid().optional(),
    externalRef: text(100).optional(),
    product: text(200),
    quantity: z.number().int().positive().max(100_000_000),
    promisedAt: isoDateTime,
    route: z.array(routeStep).min(1).max(MAX_ROUTE_STEPS),
  })
  .superRefine((body, ctx) => {
    const seen = new Set<string>();
    body.route.forEach((step, i) => {
      if (seen.has(step.stage)) {
        ctx.addIssue({ code: 'custom', path: ['route', i, 'stage'], message: `stage ${step.stage} appears twice in the route` });
      }
      (step.after ?? []).forEach((dep, j) => {
        if (!seen.has(dep)) {
          ctx.addIssue({ code: 'custom', path: ['route', i, 'after', j], message: `${dep} is not an earlier step of the route` });
        }
      });
      seen.add(step.stage);
    });
  });
export type CreateOrderInput = z.infer<typeof createOrderBody>;

export const stepSchema = z.object({
  stage: z.string(),
  factoryId: z.uuid(),
  plannedHours: z.number(),
  after: z.array(z.string()),
  plannedStart: z.string(),
  plannedEnd: z.string(),
  startedAt: z.string().nullable(),
  completedAt: z.string().nullable(),
  progress: z.number(),
  status: z.enum(['pending', 'in_progress', 'done']),
});

export const orderSchema = z.object({
  id: z.uuid(),
  externalRef: z.string().nullable(),
  customerId: z.uuid(),
  engineerId: z.uuid().nullable(),
  product: z.string(),
  quantity: z.number().int(),
  status: z.enum(ORDER_STATUSES),
  currentStages: z.array(z.string()).describe('Stages in progress, and those whose predecessors are done but have not started'),
  progress: z.number().describe('Planned hours done, in percent of the route'),
  promisedAt: z.string(),
  dueAt: z.string().describe('The promise moved by the time the order waited on the customer (engineering-query holds pause the clock); late and at risk are judged against it'),
  projectedAt: z.string().nullable().describe('Now plus the remaining planned work along the longest remaining path; overrunning stages count as still running'),
  late: z.boolean().describe('Due date passed and not delivered, or delivered after it'),
  atRisk: z.boolean().describe('Not late yet, but projected to complete after the due date'),
  lateByMinutes: z.number().int(),
  overrun: z.boolean().describe('A stage in progress has run past its planned hours'),
  lateStart: z.boolean().describe('A stage whose predecessors are done has passed its planned start without starting'),
  lastEventAt: z.string().describe('The last update; an open order with none for long is silent'),
  holdCause: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
  lastSeq: z.number().int(),
  route: z.array(stepSchema),
});
export type Order = z.infer<typeof orderSchema>;

const bool = z.enum(['true', 'false']).transform((v) => v === 'true');

export const listOrdersQuery = z.strictObject({
  status: z
    .string()
    .transform((s) => s.split(','))
    .pipe(z.array(z.enum(ORDER_STATUSES)).min(1))
    .optional()
    .describe('One status or several, comma separated'),
  late: bool.optional(),
  atRisk: bool.optional(),
  overrun: bool.optional().describe('A stage in progress past its planned hours'),
  lateStart: bool.optional().describe('A ready stage past its planned start, not started'),
  silent: bool.optional().describe('Open, and no update for silentAfterHours'),
  silentAfterHours: z.coerce.number().min(0.1).max(24 * 90).default(24),
  customerId: z.uuid().optional(),
  factoryId: z.uuid().optional(),
  stage: stageCode.optional().describe('A current stage'),
  country: countryCode.optional().describe("The customer's country"),
  promisedBefore: isoDateTime.optional(),
  promisedAfter: isoDateTime.optional(),
  product: text(200).optional(),
  sort: z.enum(['promisedAt', '-lateness', '-updatedAt']).default('promisedAt'),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(512).optional().describe('nextCursor of the previous page'),
});
export type ListOrdersQuery = z.infer<typeof listOrdersQuery>;
