import { z } from 'zod';
import { isoDateTime, text } from '../http/schemas.js';

export const stageCode = z
  .string()
  .regex(/^[a-z][a-z0-9_]{0,39}$/, 'must be a stage code: lower case letters, digits and _, 1 to 40 long');

export const HOLD_CAUSES = ['engineering_query', 'material', 'equipment', 'quality', 'capacity', 'other'] as const;
export const SYSTEM_EVENT_TYPES = ['created', 'became_at_risk', 'became_late'] as const;

const quantity = z.number().int().min(0).max(100_000_000);
const common = { occurredAt: isoDateTime.optional().describe('When it happened; defaults to now; at most 5 minutes ahead') };

// What clients may post, one schema per type. Unknown fields are refused, not silently dropped.
export const eventInputSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('stage_started'), stage: stageCode, ...common }),
  z.strictObject({
    type: z.literal('stage_progress'),
    stage: stageCode,
    progress: z.number().min(0).max(100),
    quantityGood: quantity.optional(),
    quantityScrap: quantity.optional(),
    ...common,
  }),
  z.strictObject({
    type: z.literal('stage_completed'),
    stage: stageCode,
    quantityGood: quantity.optional(),
    quantityScrap: quantity.optional(),
    ...common,
  }),
  z.strictObject({
    type: z.literal('quality_issue'),
    stage: stageCode.optional(),
    description: text(2000),
    severity: z.enum(['minor', 'major', 'critical']).default('minor'),
    quantityScrap: quantity.optional(),
    ...common,
  }),
  z.strictObject({
    type: z.literal('hold'),
    cause: z.enum(HOLD_CAUSES).default('other').describe('engineering_query: waiting on the customer; pauses the promise clock'),
    reason: text(2000),
    ...common,
  }),
  z.strictObject({ type: z.literal('resumed'), reason: text(2000).optional(), ...common }),
  z.strictObject({ type: z.literal('shipped'), trackingNumber: text(100), carrier: text(100).optional(), ...common }),
  z.strictObject({ type: z.literal('delivered'), ...common }),
  z.strictObject({ type: z.literal('cancelled'), reason: text(2000), ...common }),
  z.strictObject({ type: z.literal('note'), text: text(4000), stage: stageCode.optional(), ...common }),
  z.strictObject({ type: z.literal('rerouted'), stage: stageCode, factoryId: z.uuid(), reason: text(2000).optional(), ...common }),
]);

export type EventInput = z.infer<typeof eventInputSchema>;
export type EventType = EventInput['type'] | (typeof SYSTEM_EVENT_TYPES)[number];
export const EVENT_TYPES = [...eventInputSchema.options.map((o) => o.shape.type.value), ...SYSTEM_EVENT_TYPES] as EventType[];

export const idempotencyKey = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[\x21-\x7e]+$/, 'must be 1 to 200 printable ASCII characters');

export const eventSchema = z.object({
  id: z.uuid(),
  orderId: z.uuid(),
  seq: z.number().int().describe('Gapless position of the event within its order, from 1 (`created`)'),
  cursor: z.string().describe('Opaque, totally ordered position in every stream; resume after it'),
  type: z.enum(EVENT_TYPES as [EventType, ...EventType[]]),
  stage: z.string().nullable(),
  factoryId: z.uuid().nullable(),
  actor: z.string(),
  occurredAt: z.string(),
  recordedAt: z.string(),
  data: z.record(z.string(), z.unknown()),
});
export type Event = z.infer<typeof eventSchema>;

export const batchBody = z.strictObject({
  events: z
    .array(z.record(z.string(), z.unknown()))
    .min(1)
    .describe('Each item: {orderId, idempotencyKey, type, …the fields of that type}; validated one by one'),
});

export const batchItemSchema = z.object({ orderId: z.uuid(), idempotencyKey }).passthrough();
