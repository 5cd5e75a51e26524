import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Principal } from '../auth/principal.js';
import { principalId } from '../auth/principal.js';
import type { DB, OrderRow, OrderStepRow } from '../db/schema.js';
import { countedOf, orderFacts, recordFacts } from '../ops/facts.js';
import { insertEvents } from '../events/repository.js';
import { badRequest, conflict, idempotencyMismatch, notFound, type FieldError } from '../http/problems.js';
import { claimKeys, requestHash } from '../idempotency/store.js';
import type { OrderState } from './model.js';
import { derive, flagsAt, planRoute, projectedAt, type Instant } from './projection.js';
import { derivedColumns, loadOrderAndSteps } from './repository.js';
import type { OrderStateCache, WriteView } from './state-cache.js';
import type { CreateOrderInput, Order } from './schemas.js';

const iso = (d: Date | null) => d?.toISOString() ?? null;

/** The columns an order's flags are judged on, as a row reads them or a JSON page (epoch ms: list.ts). */
type FlagColumns = Pick<OrderRow, 'status' | 'hold_cause'> &
  Record<'due_at', Instant> &
  Record<'delivered_at' | 'at_risk_at' | 'held_at' | 'overrun_at' | 'late_start_at', Instant | null>;

/** flagsAt for an order's columns. */
export const flagsOfRow = (r: FlagColumns, now: Date) =>
  flagsAt(
    {
      status: r.status,
      dueAt: r.due_at,
      deliveredAt: r.delivered_at,
      atRiskAt: r.at_risk_at,
      holdCause: r.hold_cause,
      heldAt: r.held_at,
      overrunAt: r.overrun_at,
      lateStartAt: r.late_start_at,
    },
    now,
  );

/** The API's view of an order row without its route, with the time-dependent flags as of `now`. */
export function orderHead(r: OrderRow, now: Date): Omit<Order, 'route'> {
  const flags = flagsOfRow(r, now);
  return {
    id: r.id,
    externalRef: r.external_ref,
    customerId: r.customer_id,
    engineerId: r.engineer_id,
    product: r.product,
    quantity: r.quantity,
    status: r.status as Order['status'],
    currentStages: r.current_stages,
    progress: r.progress,
    promisedAt: r.promised_at.toISOString(),
    dueAt: r.due_at.toISOString(),
    projectedAt: iso(
      projectedAt(
        {
          status: r.status,
          deliveredAt: r.delivered_at,
          projectionLeadMinutes: r.projection_lead_minutes,
          projectionFloorAt: r.projection_floor_at,
        },
        now,
      ),
    ),
    ...flags,
    holdCause: r.hold_cause,
    lastEventAt: r.last_event_at.toISOString(),
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
    lastSeq: r.last_seq,
  };
}

/** The API's view of an order row and its steps, with the time-dependent flags as of `now`. */
export function toOrder(r: OrderRow, steps: OrderStepRow[], now: Date): Order {
  return {
    ...orderHead(r, now),
    // The same fields, in the same order, as repository.ts routesJson writes them.
    route: steps.map((s) => ({
      stage: s.stage,
      factoryId: s.factory_id,
      plannedHours: s.planned_hours,
      after: s.after,
      plannedStart: s.planned_start.toISOString(),
      plannedEnd: s.planned_end.toISOString(),
      startedAt: iso(s.started_at),
      completedAt: iso(s.completed_at),
      progress: s.progress,
      status: s.status as Order['route'][number]['status'],
    })),
  };
}

/** Whether the caller may know the order exists: its customer, a factory on its route, or staff. */
export function maySee(p: Principal, order: { customer_id: string }, steps: Array<{ factory_id: string }>): boolean {
  switch (p.role) {
    case 'ops':
    case 'admin':
      return true;
    case 'customer':
      return order.customer_id === p.customerId;
    case 'factory':
      return steps.some((s) => s.factory_id === p.factoryId);
  }
}

/** One order as the caller may see it; another customer's or factory's order does not exist. */
export async function getOrder(db: Kysely<DB>, p: Principal, id: string, now = new Date()): Promise<Order> {
  return (await readOrder(db, p, id, now)).order;
}

/** getOrder, with the order as a write sees it (read in the same statement). */
async function readOrder(db: Kysely<DB>, p: Principal, id: string, now: Date): Promise<{ order: Order; view: WriteView }> {
  const found = await loadOrderAndSteps(db, id);
  if (!found || !maySee(p, found.row, found.steps)) throw notFound('order');
  return { order: toOrder(found.row, found.steps, now), view: { row: found.row, state: found.state } };
}

async function checkReferences(db: Kysely<DB>, input: CreateOrderInput): Promise<void> {
  const errors: FieldError[] = [];
  const customer = await db.selectFrom('customers').select('id').where('id', '=', input.customerId).executeTakeFirst();
  if (!customer) errors.push({ path: 'body.customerId', message: 'no such customer' });
  if (input.engineerId) {
    const eng = await db.selectFrom('engineers').select('customer_id').where('id', '=', input.engineerId).executeTakeFirst();
    if (!eng || eng.customer_id !== input.customerId) {
      errors.push({ path: 'body.engineerId', message: 'no such engineer at this customer' });
    }
  }
  const factoryIds = [...new Set(input.route.map((s) => s.factoryId))];
  const found = new Set(
    (await db.selectFrom('factories').select('id').where('id', 'in', factoryIds).execute()).map((f) => f.id),
  );
  input.route.forEach((s, i) => {
    if (!found.has(s.factoryId)) errors.push({ path: `body.route[${i}].factoryId`, message: 'no such factory' });
  });
  if (errors.length) throw badRequest(`invalid ${errors.map((e) => e.path).join(', ')}`, errors);
}

/**
 * Creates an order, its route and its `created` event in one transaction. With an idempotency
 * key, a retry returns the order it created (replayed: true) and never a second one.
 */
export async function createOrder(
  db: Kysely<DB>,
  p: Principal,
  input: CreateOrderInput,
  idempotencyKey: string | undefined,
  now = new Date(),
  kept?: OrderStateCache,
): Promise<{ order: Order; replayed: boolean }> {
  await checkReferences(db, input);
  const id = randomUUID();
  const route = input.route.map((s, i) => ({ ...s, after: s.after ?? (i > 0 ? [input.route[i - 1]!.stage] : []) }));
  const plan = planRoute(route, now);
  const customer = await db.selectFrom('customers').select('country').where('id', '=', input.customerId).executeTakeFirstOrThrow();

  const replayOf = await db.transaction().execute(async (tx) => {
    if (idempotencyKey) {
      const outcome = (await claimKeys(tx, principalId(p), [{ key: idempotencyKey, hash: requestHash(input), resourceId: id }])).get(
        idempotencyKey,
      )!;
      if (outcome.kind === 'mismatch') throw idempotencyMismatch();
      if (outcome.kind === 'replay') return outcome.resourceId;
    }
    if (input.externalRef) {
      const dup = await tx
        .selectFrom('orders')
        .select('id')
        .where('customer_id', '=', input.customerId)
        .where('external_ref', '=', input.externalRef)
        .executeTakeFirst();
      if (dup) throw conflict('external-ref-exists', `this customer already has an order with externalRef ${input.externalRef} (${dup.id})`);
    }
    const state: OrderState = {
      id,
      customerId: input.customerId,
      status: 'open',
      promisedAt: new Date(input.promisedAt),
      dueAt: new Date(input.promisedAt),
      createdAt: now,
      holdCause: null,
      heldAt: null,
      shippedAt: null,
      deliveredAt: null,
      cancelledAt: null,
      lastSeq: 1,
      steps: route.map((s, i) => ({
        position: i,
        stage: s.stage,
        factoryId: s.factoryId,
        plannedHours: s.plannedHours,
        after: s.after,
        plannedStart: plan[i]!.plannedStart,
        plannedEnd: plan[i]!.plannedEnd,
        status: 'pending',
        progress: 0,
        startedAt: null,
        completedAt: null,
      })),
    };
    const derived = derive(state, now);
    await tx
      .insertInto('orders')
      .values({
        id,
        external_ref: input.externalRef ?? null,
        customer_id: input.customerId,
        customer_country: customer.country,
        engineer_id: input.engineerId ?? null,
        product: input.product,
        quantity: input.quantity,
        promised_at: state.promisedAt,
        due_at: state.dueAt,
        last_seq: 1,
        last_event_at: now,
        created_at: now,
        updated_at: now,
        ...derivedColumns(derived),
      })
      .execute();
    const counted = countedOf({ status: 'open', ...derivedColumns(derived), customer_country: customer.country, due_at: state.dueAt });
    await recordFacts(tx, orderFacts(null, { counted, state }));
    await tx
      .insertInto('order_steps')
      .values(
        state.steps.map((s) => ({
          order_id: id,
          position: s.position,
          stage: s.stage,
          factory_id: s.factoryId,
          planned_hours: s.plannedHours,
          after: [...s.after],
          planned_start: s.plannedStart,
          planned_end: s.plannedEnd,
        })),
      )
      .execute();
    await insertEvents(tx, [
      {
        id: randomUUID(),
        orderId: id,
        customerId: input.customerId,
        seq: 1,
        type: 'created',
        stage: null,
        factoryId: null,
        actor: principalId(p),
        occurredAt: now,
        data: {
          product: input.product,
          quantity: input.quantity,
          promisedAt: state.promisedAt.toISOString(),
          externalRef: input.externalRef ?? null,
          route: route.map((s) => ({ stage: s.stage, factoryId: s.factoryId, plannedHours: s.plannedHours, after: s.after })),
        },
      },
    ]);
    return null;
  });
  const { order, view } = await readOrder(db, p, replayOf ?? id, now);
  // Kept as committed, so that the order's first status update on this instance takes the short
  // way (events/kept-append.ts).
  if (replayOf === null) kept?.put(view);
  return { order, replayed: replayOf !== null };
}
