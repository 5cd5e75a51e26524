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

// The order and step columns an append writes (orders/repository.ts orderColumns, changedSteps),
// with their types as the statement reads them from JSON. A timestamp travels as its epoch
// milliseconds (jsonRows): see there.
const ORDER_SET = {
  status: 'text', due_at: 'timestamptz', hold_cause: 'text', held_at: 'timestamptz', shipped_at: 'timestamptz',
  delivered_at: 'timestamptz', cancelled_at: 'timestamptz', last_seq: 'int', last_event_at: 'timestamptz',
  updated_at: 'timestamptz', current_stages: 'text[]', progress: 'real', projection_lead_minutes: 'int',
  projection_floor_at: 'timestamptz', at_risk_at: 'timestamptz', overrun_at: 'timestamptz', late_start_at: 'timestamptz',
} as const;
const STEP_SET = { status: 'text', progress: 'real', factory_id: 'uuid', started_at: 'timestamptz', completed_at: 'timestamptz' } as const;
type Columns = Record<string, string>;

/** `v.c` as the column's value: a timestamp from its epoch milliseconds. */
const valueOf = (c: string, type: string) => (type === 'timestamptz' ? sql`to_timestamp(v.${sql.ref(c)} / 1000)` : sql`v.${sql.ref(c)}`);
const assignments = (columns: Columns) => sql.join(Object.entries(columns).map(([c, t]) => sql`${sql.ref(c)} = ${valueOf(c, t)}`));
/** The record definition jsonb_to_recordset reads the rows with: timestamps as numbers. */
const recordOf = (columns: Columns) =>
  sql.join(Object.entries(columns).map(([c, t]) => sql`${sql.ref(c)} ${sql.raw(t === 'timestamptz' ? 'float8' : t)}`));

/**
 * Rows as JSON, each Date as its epoch milliseconds. JSON.stringify leaves its fast path for any
 * object with a toJSON (a Date): an order row of the append took 6.5 µs that way against 1.6 µs
 * with numbers, and the append writes one for every order it moves (BENCHMARKS.md, change 77).
 */
function jsonRows(rows: ReadonlyArray<Record<string, unknown>>): string {
  const plain = rows.map((r) => {
    const o: Record<string, unknown> = {};
    for (const k in r) {
      const v = r[k];
      o[k] = v instanceof Date ? v.getTime() : v;
    }
    return o;
  });
  return JSON.stringify(plain);
}

/**
 * Appends events and writes back every order and step they changed, with the KPI facts the
 * changes make (ops/facts.ts), in one statement of the caller's transaction: rows travel as JSON
 * (jsonRows), typed by the record definitions above, so one round trip serves one event or five
 * hundred.
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
      from jsonb_to_recordset(${v.orders}::jsonb) as v(id uuid, ${recordOf(ORDER_SET)}, at_risk_alerted boolean)
      where o.id = v.id and o.id = any(${v.orderIds}::uuid[])
      returning o.id),
    steps_written as (
      update order_steps s set ${assignments(STEP_SET)}
      from jsonb_to_recordset(${v.steps}::jsonb) as v(order_id uuid, position smallint, ${recordOf(STEP_SET)})
      where s.order_id = v.order_id and s.position = v.position and s.order_id = any(${v.stepOrderIds}::uuid[])
      returning s.order_id),
    facts_written as (
      insert into kpi_facts (kind, key, day, n, hours, planned_hours, on_time)
      select kind, key, day, coalesce(n, 1), hours, planned_hours, on_time
      from jsonb_populate_recordset(null::kpi_facts, ${v.facts}::jsonb)
      returning id),
    appended as (
      insert into events (id, order_id, customer_id, seq, type, stage, factory_id, actor, occurred_at, data)
      select id, order_id, customer_id, seq, type, stage, factory_id, actor, to_timestamp(occurred_at / 1000), data
      from rows from (jsonb_to_recordset(${v.events}::jsonb)
        as (id uuid, order_id uuid, customer_id uuid, seq int, type text, stage text, factory_id uuid, actor text, occurred_at float8, data jsonb))
        with ordinality as e
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
      orders: jsonRows(orderRows),
      orderIds: orderRows.map((o) => o.id),
      steps: jsonRows(stepRows),
      stepOrderIds: [...new Set(stepRows.map((r) => r.order_id as string))],
      facts: JSON.stringify(facts),
      events: jsonRows(events.map(eventRow)),
    }),
  );
}
