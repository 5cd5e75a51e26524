import { sql, type Kysely, type SqlBool } from 'kysely';
import type { Principal } from '../auth/principal.js';
import type { DB } from '../db/schema.js';
import { decodeCursor, encodeCursor, type Position } from '../events/cursor.js';
import { toEvent } from '../events/repository.js';
import type { StreamEvent, Topic } from './topics.js';

// Reading the event log in cursor order, only below the horizon: the oldest transaction still
// running. Every transaction with a smaller id has finished, so nothing can later appear below
// a cursor returned from here (an event's cursor starts with its transaction's id).

const horizon = sql`pg_snapshot_xmin(pg_current_snapshot())`;
const after = (p: Position) => sql<SqlBool>`(e.txid, e.pos) > (${p.txid.toString()}::xid8, ${Number(p.pos)}::bigint)`;
const upTo = (p: Position) => sql<SqlBool>`(e.txid, e.pos) <= (${p.txid.toString()}::xid8, ${Number(p.pos)}::bigint)`;

/**
 * Whether committed events wait above the horizon: the log's last event is at or above it. Asked
 * as "the newest txid" (one step down the cursor index) because the planner cannot estimate the
 * horizon and would answer `exists (... txid >= horizon)` with a scan of the whole log.
 */
const heldSql = sql<boolean>`coalesce((select txid from events order by txid desc limit 1) >= ${horizon}, false)`;

export interface ReadOptions {
  after?: Position;
  upTo?: Position;
  topic?: Topic;
  /** Only what this caller may see. */
  principal?: Principal;
  limit: number;
  /**
   * Whether each event needs the factories of its order's route (to find its factory topics).
   * The tail does; a replay does not, since its query already chose the topic and the caller.
   */
  routing?: boolean;
}

/** A page of the log, and whether committed events wait above the horizon (known when the page is not empty). */
export type LogPage = StreamEvent[] & { heldBack?: boolean };

export async function readLog(db: Kysely<DB>, o: ReadOptions): Promise<LogPage> {
  const t = o.topic;
  const p = o.principal;
  const rows = await db
    .selectFrom('events as e')
    .select([
      'e.id',
      'e.order_id',
      'e.customer_id',
      'e.seq',
      'e.type',
      'e.stage',
      'e.factory_id',
      'e.actor',
      'e.occurred_at',
      'e.recorded_at',
      'e.data',
      'e.pos',
      sql<string>`e.txid::text`.as('txid'),
      o.routing === false
        ? sql<string[]>`'{}'::text[]`.as('factory_ids')
        : sql<string[]>`array(select distinct s.factory_id::text from order_steps s where s.order_id = e.order_id)`.as('factory_ids'),
      // Evaluated once per query (it does not depend on the row): saves the tail a round trip.
      heldSql.as('held'),
    ])
    .where(sql<SqlBool>`e.txid < ${horizon}`)
    .$if(o.after !== undefined, (q) => q.where(after(o.after!)))
    .$if(o.upTo !== undefined, (q) => q.where(upTo(o.upTo!)))
    .$if(t?.kind === 'order', (q) => q.where('e.order_id', '=', (t as { id: string }).id))
    .$if(t?.kind === 'customer', (q) => q.where('e.customer_id', '=', (t as { id: string }).id))
    .$if(t?.kind === 'factory', (q) => q.where(routedTo((t as { id: string }).id)))
    .$if(p?.role === 'customer', (q) => q.where('e.customer_id', '=', (p as { customerId: string }).customerId))
    .$if(p?.role === 'factory', (q) => q.where(routedTo((p as { factoryId: string }).factoryId)))
    .orderBy('e.txid')
    .orderBy('e.pos')
    .limit(o.limit)
    .execute();
  const page: LogPage = rows.map((r) => ({ event: toEvent(r), customerId: r.customer_id, factoryIds: r.factory_ids }));
  if (rows.length) page.heldBack = rows[0]!.held;
  return page;
}

const routedTo = (factoryId: string) =>
  sql<SqlBool>`(e.factory_id = ${factoryId} or exists (select 1 from order_steps s where s.order_id = e.order_id and s.factory_id = ${factoryId}))`;

/** The last position below the horizon (where a live stream starts), and whether events wait above it. */
export async function readHead(db: Kysely<DB>): Promise<{ head: Position | undefined; heldBack: boolean }> {
  const { rows } = await sql<{ txid: string | null; pos: number | null; held: boolean }>`
    select last.txid::text as txid, last.pos, ${heldSql} as held
    from (select 1) one
    left join lateral (select txid, pos from events where txid < ${horizon} order by txid desc, pos desc limit 1) last on true`.execute(db);
  const r = rows[0]!;
  return { head: r.txid === null ? undefined : { txid: BigInt(r.txid), pos: BigInt(r.pos!) }, heldBack: r.held };
}

export const positionOf = (e: StreamEvent): Position => decodeCursor(e.event.cursor)!;
export const cursorOf = (p: Position | undefined) => (p ? encodeCursor(p.txid, p.pos) : encodeCursor(0, 0));
