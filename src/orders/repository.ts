import { sql, type CompiledQuery, type Kysely, type SqlBool, type Transaction } from 'kysely';
import { fixedStatement } from '../db/fixed.js';
import { prepared } from '../db/flight.js';
import type { DB, OrderRow, OrderStepRow } from '../db/schema.js';
import type { KeptRoute } from './route-cache.js';
import type { Derived, OrderState, OrderStatus, StepState, StepStatus } from './model.js';

export const toStepState = (r: OrderStepRow): StepState => ({
  position: r.position,
  stage: r.stage,
  factoryId: r.factory_id,
  plannedHours: r.planned_hours,
  after: r.after,
  plannedStart: r.planned_start,
  plannedEnd: r.planned_end,
  status: r.status as StepStatus,
  progress: r.progress,
  startedAt: r.started_at,
  completedAt: r.completed_at,
});

export const toOrderState = (r: OrderRow, steps: StepState[]): OrderState => ({
  id: r.id,
  customerId: r.customer_id,
  status: r.status as OrderStatus,
  promisedAt: r.promised_at,
  dueAt: r.due_at,
  createdAt: r.created_at,
  holdCause: r.hold_cause,
  heldAt: r.held_at,
  shippedAt: r.shipped_at,
  deliveredAt: r.delivered_at,
  cancelledAt: r.cancelled_at,
  lastSeq: r.last_seq,
  steps,
});

/** Steps of several orders, grouped by order, in route order. */
export async function stepsOf(db: Kysely<DB>, orderIds: string[]): Promise<Map<string, OrderStepRow[]>> {
  const out = new Map<string, OrderStepRow[]>();
  if (!orderIds.length) return out;
  // One text for any number of orders, prepared (db/flight.ts): a page's steps are read on every list.
  const query = db
    .selectFrom('order_steps')
    .selectAll()
    .where(sql<SqlBool>`order_id = any(${orderIds}::uuid[])`)
    .orderBy('order_id')
    .orderBy('position')
    .compile();
  const rows = (await db.executeQuery(prepared(query, 'read'))).rows;
  for (const r of rows) {
    const list = out.get(r.order_id) ?? [];
    list.push(r);
    out.set(r.order_id, list);
  }
  return out;
}

// An instant as JavaScript's toISOString() writes it (milliseconds, Z), not as Postgres does.
/** A timestamptz column written by Postgres as `Date.toISOString()` writes it (column may be qualified). */
export const isoText = (column: string) => sql<string>`to_char(${sql.ref(column)} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

const routesQuery = fixedStatement(['ids'], (db, v) =>
  sql`select o.id, o.last_seq as seq, coalesce((select json_agg(json_build_object(
        'stage', stage, 'factoryId', factory_id, 'plannedHours', planned_hours, 'after', after,
        'plannedStart', ${isoText('planned_start')}, 'plannedEnd', ${isoText('planned_end')},
        'startedAt', ${isoText('started_at')}, 'completedAt', ${isoText('completed_at')},
        'progress', progress, 'status', status
      ) order by position) from order_steps s where s.order_id = o.id)::text, '[]') as route
      from orders o where o.id = any(${v.ids}::uuid[])`.compile(db),
);

/**
 * The routes of several orders as the API writes them (an Order's `route`), as JSON made by
 * Postgres and kept as bytes, each with its order's seq read in the same statement (the route as
 * of that seq): a list page passes them through instead of parsing some 850 step rows and their
 * 3,400 timestamps into objects and writing them out again (orders/list.ts pageJson).
 */
export async function routesJson(db: Kysely<DB>, orderIds: string[]): Promise<Map<string, KeptRoute>> {
  if (!orderIds.length) return new Map();
  const rows = (await db.executeQuery<{ id: string; seq: number; route: string }>(prepared(routesQuery(db, { ids: orderIds }), 'read'))).rows;
  return new Map(rows.map((r) => [r.id, { seq: r.seq, json: Buffer.from(r.route) }]));
}

/**
 * Takes the write lock of each order: a transaction-scoped advisory lock, taken before the
 * transaction's first write. Every writer of events holds it, so writes to one order queue and
 * different orders never wait. Taking it before any write matters for the streams: Postgres
 * assigns a transaction its id at its first write, so the second writer of an order gets its id
 * only after the first committed, and event cursors (which start with that id) follow each
 * order's seq. Locks are taken in key order, so two writers of the same orders cannot deadlock.
 */
export async function lockOrdersForWrite(tx: Transaction<DB>, ids: string[]): Promise<void> {
  const q = lockOrdersQuery(tx, ids);
  if (q) await tx.executeQuery(q);
}

const lockOrders = fixedStatement(['ids'], (db, v) =>
  sql`select pg_advisory_xact_lock(k) from (
      select hashtextextended(id::text, 0) as k from unnest(${v.ids}::uuid[]) as id order by k
    ) as keys`.compile(db),
);

/** The statement of lockOrdersForWrite, for a pipelined transaction (db/flight.ts); none for no ids. */
export function lockOrdersQuery(db: Kysely<DB>, ids: string[]): CompiledQuery | undefined {
  const unique = [...new Set(ids)];
  return unique.length ? prepared(lockOrders(db, { ids: unique })) : undefined;
}

/** A step as json_agg gives it back: timestamps as text. */
export type StepJson = Omit<OrderStepRow, 'planned_start' | 'planned_end' | 'started_at' | 'completed_at'> &
  Record<'planned_start' | 'planned_end', string> &
  Record<'started_at' | 'completed_at', string | null>;

const stepFromJson = (s: StepJson): OrderStepRow => ({
  ...s,
  planned_start: new Date(s.planned_start),
  planned_end: new Date(s.planned_end),
  started_at: s.started_at === null ? null : new Date(s.started_at),
  completed_at: s.completed_at === null ? null : new Date(s.completed_at),
});

/** Each order's steps as JSON, beside its row: one round trip for orders and steps. */
export const stepsJson = sql<StepJson[]>`(select coalesce(json_agg(s order by s.position), '[]') from order_steps s where s.order_id = o.id)`;

/**
 * One order with its steps, in one statement (one snapshot): the steps as rows (for the API's
 * view of it) and the order as a write sees it (for the kept orders).
 */
export async function loadOrderAndSteps(
  db: Kysely<DB>,
  id: string,
): Promise<{ row: OrderRow; steps: OrderStepRow[]; state: OrderState } | undefined> {
  const found = await db.selectFrom('orders as o').selectAll('o').select(stepsJson.as('steps_json')).where('o.id', '=', id).executeTakeFirst();
  if (!found) return undefined;
  const { steps_json, ...row } = found;
  const steps = steps_json.map(stepFromJson);
  return { row, steps, state: toOrderState(row, steps.map(toStepState)) };
}

/** Orders as a write sees them, from rows that carry their steps_json. */
export function toLoaded(rows: Array<OrderRow & { steps_json: StepJson[] }>): Map<string, { row: OrderRow; state: OrderState }> {
  const out = new Map<string, { row: OrderRow; state: OrderState }>();
  for (const { steps_json, ...r } of rows) out.set(r.id, { row: r, state: toOrderState(r, steps_json.map(stepFromJson).map(toStepState)) });
  return out;
}

/**
 * Loads orders and their steps, as a write sees them once it holds their locks: one round trip,
 * the steps aggregated beside each order row (a write is a chain of round trips; each one counts).
 */
export async function loadOrders(tx: Kysely<DB>, ids: string[]): Promise<Map<string, { row: OrderRow; state: OrderState }>> {
  if (!ids.length) return new Map();
  const rows = await tx
    .selectFrom('orders as o')
    .selectAll('o')
    .select(stepsJson.as('steps_json'))
    .where('o.id', 'in', [...new Set(ids)])
    .execute();
  return toLoaded(rows);
}

export function derivedColumns(d: Derived) {
  return {
    current_stages: d.currentStages,
    progress: d.progress,
    projection_lead_minutes: d.projectionLeadMinutes,
    projection_floor_at: d.projectionFloorAt,
    at_risk_at: d.atRiskAt,
    overrun_at: d.overrunAt,
    late_start_at: d.lateStartAt,
  };
}

/** The columns of an order's row that a write sets: its state and its projection. */
export function orderColumns(after: OrderState, derived: Derived, now: Date) {
  return {
    status: after.status,
    due_at: after.dueAt,
    hold_cause: after.holdCause,
    held_at: after.heldAt,
    shipped_at: after.shippedAt,
    delivered_at: after.deliveredAt,
    cancelled_at: after.cancelledAt,
    last_seq: after.lastSeq,
    last_event_at: now,
    updated_at: now,
    ...derivedColumns(derived),
    // No longer at risk: the next time it is, that is a new transition and a new alert.
    ...(derived.atRiskAt === null || derived.atRiskAt > now ? { at_risk_alerted: false } : {}),
  };
}

/** The steps a write changed, as the columns it sets. */
export function changedSteps(before: OrderState, after: OrderState) {
  return after.steps
    .filter((step) => {
      const old = before.steps.find((s) => s.position === step.position)!;
      return !(
        old.status === step.status &&
        old.progress === step.progress &&
        old.factoryId === step.factoryId &&
        old.startedAt?.getTime() === step.startedAt?.getTime() &&
        old.completedAt?.getTime() === step.completedAt?.getTime()
      );
    })
    .map((step) => ({
      order_id: after.id,
      position: step.position,
      status: step.status,
      progress: step.progress,
      factory_id: step.factoryId,
      started_at: step.startedAt,
      completed_at: step.completedAt,
    }));
}

/** A state the rules may change without touching `s`: its steps copied, their `after` lists shared (read only). */
export const cloneState = (s: OrderState): OrderState => ({ ...s, steps: s.steps.map((st) => ({ ...st })) });
