import { sql, type CompiledQuery, type Kysely, type SqlBool } from 'kysely';
import type { Principal } from '../auth/principal.js';
import { fixedStatement, fixedStatements } from '../db/fixed.js';
import { prepared, type Run } from '../db/flight.js';
import type { DB } from '../db/schema.js';
import { decodeCursor, encodeCursor, type Position } from '../events/cursor.js';
import { toEvent, type EventSelection } from '../events/repository.js';
import type { StreamEvent, Topic } from './topics.js';

// Reading the event log in cursor order, only below the horizon: the oldest transaction still
// running. Every transaction with a smaller id has finished, so nothing can later appear below
// a cursor returned from here (an event's cursor starts with its transaction's id).

const horizon = sql`pg_snapshot_xmin(pg_current_snapshot())`;

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

interface Shape {
  after: boolean;
  upTo: boolean;
  topic: Topic['kind'] | undefined;
  role: Principal['role'] | undefined;
  routing: boolean;
}

// One statement per shape of read (a topic, a caller, where it starts and ends), compiled once.
const readLogStatement = fixedStatements(
  ['afterTxid', 'afterPos', 'upToTxid', 'upToPos', 'topicId', 'customerId', 'factoryId', 'limit'],
  (s: Shape) => `${s.after}/${s.upTo}/${s.topic}/${s.role}/${s.routing}`,
  (db, v, s) =>
    db
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
        s.routing
          ? sql<string[]>`array(select distinct s.factory_id::text from order_steps s where s.order_id = e.order_id)`.as('factory_ids')
          : sql<string[]>`'{}'::text[]`.as('factory_ids'),
        // Evaluated once per query (it does not depend on the row): saves the tail a round trip.
        heldSql.as('held'),
      ])
      .where(sql<SqlBool>`e.txid < ${horizon}`)
      .$if(s.after, (q) => q.where(sql<SqlBool>`(e.txid, e.pos) > (${v.afterTxid}::xid8, ${v.afterPos}::bigint)`))
      .$if(s.upTo, (q) => q.where(sql<SqlBool>`(e.txid, e.pos) <= (${v.upToTxid}::xid8, ${v.upToPos}::bigint)`))
      .$if(s.topic === 'order', (q) => q.where('e.order_id', '=', v.topicId))
      .$if(s.topic === 'customer', (q) => q.where('e.customer_id', '=', v.topicId))
      .$if(s.topic === 'factory', (q) => q.where(routedTo(v.topicId)))
      .$if(s.role === 'customer', (q) => q.where('e.customer_id', '=', v.customerId))
      .$if(s.role === 'factory', (q) => q.where(routedTo(v.factoryId)))
      .orderBy('e.txid')
      .orderBy('e.pos')
      .limit(v.limit)
      .compile(),
);

/** The rows of a read: through `run` as a prepared statement (the tail's), else through Kysely. */
const rowsOf = async <R>(db: Kysely<DB>, query: CompiledQuery, run?: Run): Promise<R[]> =>
  run ? run<R>(prepared(query)) : (await db.executeQuery<R>(query)).rows;

type LogRow = EventSelection & { customer_id: string; factory_ids: string[]; held: boolean };

/** `run` runs the statement (the tail's: prepared, see db/flight.ts); Kysely's by default. */
export async function readLog(db: Kysely<DB>, o: ReadOptions, run?: Run): Promise<LogPage> {
  return pageOf(await rowsOf<LogRow>(db, readLogQuery(db, o), run));
}

/** The statement of a read of the log, for a caller that runs it itself (the tail, behind a commit). */
export function readLogQuery(db: Kysely<DB>, o: ReadOptions): CompiledQuery {
  const t = o.topic;
  const p = o.principal;
  return readLogStatement(
    db,
    { after: o.after !== undefined, upTo: o.upTo !== undefined, topic: t?.kind, role: p?.role, routing: o.routing !== false },
    {
      afterTxid: o.after?.txid.toString(),
      afterPos: o.after === undefined ? undefined : Number(o.after.pos),
      upToTxid: o.upTo?.txid.toString(),
      upToPos: o.upTo === undefined ? undefined : Number(o.upTo.pos),
      topicId: t && 'id' in t ? t.id : undefined,
      customerId: p?.role === 'customer' ? p.customerId : undefined,
      factoryId: p?.role === 'factory' ? p.factoryId : undefined,
      limit: o.limit,
    },
  );
}

/** The rows of readLogQuery as a page. */
export function pageOf(rows: unknown[]): LogPage {
  const page: LogPage = (rows as LogRow[]).map((r) => ({ event: toEvent(r), customerId: r.customer_id, factoryIds: r.factory_ids }));
  if (rows.length) page.heldBack = (rows[0] as LogRow).held;
  return page;
}

const routedTo = (factoryId: unknown) =>
  sql<SqlBool>`(e.factory_id = ${factoryId} or exists (select 1 from order_steps s where s.order_id = e.order_id and s.factory_id = ${factoryId}))`;

/** The last position below the horizon (where a live stream starts), and whether events wait above it. */
const headStatement = fixedStatement([], (db) =>
  sql`
    select last.txid::text as txid, last.pos, ${heldSql} as held
    from (select 1) one
    left join lateral (select txid, pos from events where txid < ${horizon} order by txid desc, pos desc limit 1) last on true`.compile(db),
);

export async function readHead(db: Kysely<DB>, run?: Run): Promise<{ head: Position | undefined; heldBack: boolean }> {
  type Row = { txid: string | null; pos: number | null; held: boolean };
  const query = headStatement(db, {});
  const rows = await rowsOf<Row>(db, query, run);
  const r = rows[0]!;
  return { head: r.txid === null ? undefined : { txid: BigInt(r.txid), pos: BigInt(r.pos!) }, heldBack: r.held };
}

export const positionOf = (e: StreamEvent): Position => decodeCursor(e.event.cursor)!;
export const cursorOf = (p: Position | undefined) => (p ? encodeCursor(p.txid, p.pos) : encodeCursor(0, 0));
