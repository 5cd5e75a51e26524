import pg from 'pg';
import type { BenchOrder } from '../lib/fixtures.js';
import { closedLoop, type LoadResult, type Meter } from '../lib/load.js';

// The simplest durable append, straight from node-pg: one statement (its own transaction, with
// synchronous commit) that advances the order's seq and inserts the event with it. No HTTP, no
// validation, no idempotency, no projection: what the service's ingest is measured against.
const APPEND = `with o as (
    update orders set last_seq = last_seq + 1, updated_at = now() where id = any($1::uuid[])
    returning id, customer_id, last_seq)
  insert into events (order_id, customer_id, seq, type, actor, occurred_at, data)
  select id, customer_id, last_seq, 'note', 'bench:ceiling', now(), $2::jsonb from o`;

/**
 * `workers` connections, each appending `perTransaction` events of distinct orders (its own
 * orders, so workers never wait on each other's rows) per statement, back to back.
 */
export async function pgIngestCeiling(
  url: string,
  ordersByWorker: BenchOrder[][],
  o: { perTransaction: number; seconds: number; onTick?: (f: number) => void; meter?: Meter },
): Promise<LoadResult> {
  const pool = new pg.Pool({ connectionString: url, max: ordersByWorker.length });
  const cursors = ordersByWorker.map(() => 0);
  const data = JSON.stringify({ text: 'ceiling' });
  try {
    return await closedLoop({ workers: ordersByWorker.length, seconds: o.seconds, onTick: o.onTick, meter: o.meter }, async (w) => {
      const mine = ordersByWorker[w]!;
      const from = cursors[w]!;
      cursors[w] = from + o.perTransaction;
      const ids: string[] = [];
      for (let i = 0; i < o.perTransaction; i++) ids.push(mine[(from + i) % mine.length]!.id);
      const r = await pool.query(APPEND, [ids, data]);
      return r.rowCount ?? 0;
    });
  } finally {
    await pool.end();
  }
}
