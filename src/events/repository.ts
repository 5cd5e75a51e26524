import { sql, type Kysely, type Transaction } from 'kysely';
import type { DB } from '../db/schema.js';
import { encodeCursor } from './cursor.js';
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

type EventSelection = {
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

/** Appends events in one statement; they get their cursor from this transaction's id. */
export async function insertEvents(tx: Transaction<DB>, events: NewEvent[]): Promise<Event[]> {
  if (!events.length) return [];
  const rows = await tx
    .insertInto('events')
    .values(
      events.map((e) => ({
        id: e.id,
        order_id: e.orderId,
        customer_id: e.customerId,
        seq: e.seq,
        type: e.type,
        stage: e.stage,
        factory_id: e.factoryId,
        actor: e.actor,
        occurred_at: e.occurredAt,
        data: JSON.stringify(e.data),
      })),
    )
    .returning(eventColumns)
    .execute();
  return rows.map(toEvent);
}

export async function eventsById(db: Kysely<DB>, ids: string[]): Promise<Map<string, Event>> {
  if (!ids.length) return new Map();
  const rows = await db.selectFrom('events').select(eventColumns).where('id', 'in', ids).execute();
  return new Map(rows.map((r) => [r.id, toEvent(r)]));
}

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
