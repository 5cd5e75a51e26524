import { z } from 'zod';

/**
 * A look-back window: 24h, 7d, 30d, … at most 365 days. The summary counts it in whole UTC days
 * (hours round up): the N days before today, and today so far.
 */
export const windowParam = z
  .string()
  .regex(/^\d{1,4}[hd]$/, 'a window like 24h, 7d or 30d')
  .default('7d')
  .transform((w, ctx) => {
    const hours = Number(w.slice(0, -1)) * (w.endsWith('d') ? 24 : 1);
    if (hours < 1 || hours > 365 * 24) ctx.addIssue({ code: 'custom', message: 'between 1h and 365d' });
    return { text: w, hours };
  });

const rate = z.number().nullable();
const hours = z.object({ p50: z.number().nullable(), p90: z.number().nullable() });

export const summarySchema = z.object({
  asOf: z.string(),
  window: z.string(),
  orders: z
    .object({
      open: z.number().int(),
      onHold: z.number().int(),
      inTransit: z.number().int(),
      late: z.number().int(),
      atRisk: z.number().int(),
      silent: z.number().int(),
      overrun: z.number().int(),
      lateStart: z.number().int(),
    })
    .describe('Unfinished orders now. late: due date passed (the promise, paused while the customer holds the order). atRisk: projected past the promise, not late yet. silent: open with no update for 24 h. overrun: a stage past its planned hours. lateStart: a ready stage past its planned start.'),
  delivered: z
    .object({ count: z.number().int(), onTime: z.number().int(), onTimeRate: rate, leadTimeHours: hours })
    .describe('Orders delivered in the window: on time = delivered on or before the due date (the promise, moved by the time spent waiting on the customer); lead time = creation to delivery, p50/p90 by nearest rank from a log histogram (within 2.5%).'),
  wipByStage: z.array(z.object({ stage: z.string(), orders: z.number().int() })).describe('Unfinished orders by current stage'),
  factories: z
    .array(
      z.object({
        factoryId: z.uuid(),
        name: z.string(),
        country: z.string(),
        stagesCompleted: z.number().int(),
        onTimeRate: rate,
        averageDelayHours: z.number().nullable(),
        wip: z.number().int(),
      }),
    )
    .describe('The worst factories of the window: lowest on-time stage rate first (kept by a job a few seconds behind the writes for 1d, 7d and 30d; summed from daily rollups for other windows). A stage is on time when it took no more than its planned hours from its actual start; delay = hours beyond plan.'),
  customersByCountry: z.array(z.object({ country: z.string(), openOrders: z.number().int() })),
});
export type Summary = z.infer<typeof summarySchema>;

export const performanceSchema = z.object({
  factoryId: z.uuid(),
  name: z.string(),
  window: z.string(),
  stagesCompleted: z.number().int(),
  onTimeRate: rate,
  averageDelayHours: z.number().nullable(),
  holds: z.number().int().describe('Holds in the window not caused by the customer, on stages of this factory'),
  qualityIssues: z.number().int(),
  scrap: z.number().int(),
  wip: z.number().int().describe('Steps of this factory in progress now'),
  stages: z.array(
    z.object({
      stage: z.string(),
      completed: z.number().int(),
      onTimeRate: rate,
      plannedHours: z.number().nullable().describe('Average planned hours of the completed steps'),
      dwellHours: hours.describe('Actual time in the stage, start to completion'),
    }),
  ),
});
export type Performance = z.infer<typeof performanceSchema>;
