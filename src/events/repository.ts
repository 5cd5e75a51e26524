import { sql, type CompiledQuery, type Kysely, type Transaction } from 'kysely';
import { fixedStatement } from '../db/fixed.js';
import { prepared } from '../db/flight.js';
import type { DB } from '../db/schema.js';
import { encodeCursor } from './cursor.js';
import type { Fact } from '../ops/facts.js';
import type { Event, EventType } from './schemas.js';

export interface NewEvent {
  id: string;
  orderId: string;
  customerId: string;
  seq: number;
  type: EventType;
  stage: string | null;
  factoryId: string | null;
  actor: string;
  occurredAt: Date;
  data: Record<string, unknown>;
}

const eventColumns = [
  'id',
  'order_id',
  'seq',
  'type',
  'stage',
  'factory_id',
  'actor',
  'occurred_at',
  'recorded_at',
  'data',
  sql<string>`txid::text`.as('txid'),
  'pos',
] as const;

/** An event row as eventColumns select it. */
export type EventSelection = {
  id: string;
  order_id: string;
  seq: number;
  type: string;
  stage: string | null;
  factory_id: string | null;
  actor: string;
  occurred_at: Date;
  recorded_at: Date;
  data: Record<string, unknown>;
  txid: string;
  pos: number;
};

export const toEvent = (r: EventSelection): Event => ({
  id: r.id,
  orderId: r.order_id,
  seq: r.seq,
  cursor: encodeCursor(r.txid, r.pos),
  type: r.type as EventType,
  stage: r.stage,
  factoryId: r.factory_id,
  actor: r.actor,
  occurredAt: r.occurred_at.toISOString(),
  recordedAt: r.recorded_at.toISOString(),
  data: r.data,
});

/** An event as a row of the events table (data as given: the caller encodes it for its statement). */
const eventRow = (e: NewEvent) => ({
  id: e.id,
  order_id: e.orderId,
  customer_id: e.customerId,
  seq: e.seq,
  type: e.type,
  stage: e.stage,
  factory_id: e.factoryId,
  actor: e.actor,
  occurred_at: e.occurredAt,
  data: e.data,
});

/** Appends events in one statement; they get their cursor from this transaction's id. */
export async function insertEvents(tx: Transaction<DB>, events: NewEvent[]): Promise<Event[]> {
  if (!events.length) return [];
  const rows = await tx
    .insertInto('events')
    .values(
      events.map((e) => ({ ...eventRow(e), data: JSON.stringify(e.data) })),
    )
    .returning(eventColumns)
    .execute();
  return rows.map(toEvent);
}

/** Events by id, for a pipelined transaction; none for no ids. Read its rows with eventsOf. */
export function eventsByIdQuery(db: Kysely<DB>, ids: string[]): CompiledQuery | undefined {
  return ids.length ? db.selectFrom('events').select(eventColumns).where('id', 'in', ids).compile() : undefined;
}

/** Events of eventsByIdQuery's (or appendAndProjectQuery's) rows. */
export const eventsOf = (rows: Array<Record<string, unknown>>): Event[] => (rows as unknown as EventSelection[]).map(toEvent);

/** An order's events after a seq, in seq order. */
export async function eventsOfOrder(db: Kysely<DB>, orderId: string, afterSeq: number, limit: number): Promise<Event[]> {
  const rows = await db
    .selectFrom('events')
    .select(eventColumns)
    .where('order_id', '=', orderId)
    .where('seq', '>', afterSeq)
    .orderBy('seq')
    .limit(limit)
    .execute();
  return rows.map(toEvent);
}

/** What a write changes on one order: its row's columns and the steps that moved. */
export interface OrderWrite {
  order: Record<string, unknown> & { id: string };
  steps: Array<Record<string, unknown>>;
}

// The order columns an append writes (orders/repository.ts orderColumns) and the step columns.
const ORDER_SET = [
  'status', 'due_at', 'hold_cause', 'held_at', 'shipped_at', 'delivered_at', 'cancelled_at', 'last_seq', 'last_event_at',
  'updated_at', 'current_stages', 'progress', 'projection_lead_minutes', 'projection_floor_at', 'at_risk_at', 'overrun_at', 'late_start_at',
] as const;
const STEP_SET = ['status', 'progress', 'factory_id', 'started_at', 'completed_at'] as const;
const assignments = (columns: readonly string[]) => sql.join(columns.map((c) => sql`${sql.ref(c)} = v.${sql.ref(c)}`));

/**
 * Appends events and writes back every order and step they changed, with the KPI facts the
 * changes make (ops/facts.ts), in one statement of the caller's transaction: rows travel as JSON
 * and are typed by the tables' own row types, so one round trip serves one event or five hundred.
 * Events keep their given order (their pos follows it), and get their cursor from this
 * transaction's id. Its rows are the events (eventsOf). The `= any(ids)` conditions repeat the
 * joins' keys as arrays the planner can count: without them it guesses 100 rows from the JSON
 * and hash-joins a sequential scan of the whole table.
 */
const appendAndProject = fixedStatement(
  ['orders', 'orderIds', 'steps', 'stepOrderIds', 'facts', 'events'],
  (db, v) =>
    sql`
    with
    orders_written as (
      update orders o set ${assignments(ORDER_SET)}, at_risk_alerted = coalesce(v.at_risk_alerted, o.at_risk_alerted)
      from jsonb_populate_recordset(null::orders, ${v.orders}::jsonb) v
      where o.id = v.id and o.id = any(${v.orderIds}::uuid[])
      returning o.id),
    steps_written as (
      update order_steps s set ${assignments(STEP_SET)}
      from jsonb_populate_recordset(null::order_steps, ${v.steps}::jsonb) v
      where s.order_id = v.order_id and s.position = v.position and s.order_id = any(${v.stepOrderIds}::uuid[])
      returning s.order_id),
    facts_written as (
      insert into kpi_facts (kind, key, day, n, hours, planned_hours, on_time)
      select kind, key, day, coalesce(n, 1), hours, planned_hours, on_time
      from jsonb_populate_recordset(null::kpi_facts, ${v.facts}::jsonb)
      returning id),
    appended as (
      insert into events (id, order_id, customer_id, seq, type, stage, factory_id, actor, occurred_at, data)
      select id, order_id, customer_id, seq, type, stage, factory_id, actor, occurred_at, data
      from jsonb_populate_recordset(null::events, ${v.events}::jsonb) with ordinality as e
      order by e.ordinality
      returning id, order_id, seq, type, stage, factory_id, actor, occurred_at, recorded_at, data, txid::text as txid, pos)
    select * from appended`.compile(db),
);

/** The statement of appendAndProject for these events and writes; none when nothing is written. */
export function appendAndProjectQuery(db: Kysely<DB>, events: NewEvent[], writes: OrderWrite[], facts: Fact[] = []): CompiledQuery | undefined {
  if (!events.length && !writes.length && !facts.length) return undefined;
  const orderRows = writes.map((w) => w.order);
  const stepRows = writes.flatMap((w) => w.steps);
  return prepared(
    appendAndProject(db, {
      orders: JSON.stringify(orderRows),
      orderIds: orderRows.map((o) => o.id),
      steps: JSON.stringify(stepRows),
      stepOrderIds: [...new Set(stepRows.map((r) => r.order_id as string))],
      facts: JSON.stringify(facts),
      events: JSON.stringify(events.map(eventRow)),
    }),
  );
}
