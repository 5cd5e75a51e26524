import type pg from 'pg';

/**
 * `client.query` in its callback form, under a promise of our own. pg's promise form (no callback)
 * makes each query's result rows outlive the collector's young generation: in a loop of list
 * queries on one client, every scavenge promoted 2.3 MB and paused 12-15 ms, against 5 KB and
 * under 1 ms with the callback given up front (as pg's own Pool.query does). BENCHMARKS.md,
 * change 51.
 */
export function clientQuery<R extends pg.QueryResultRow = Record<string, unknown>>(
  client: pg.ClientBase,
  query: string | pg.QueryConfig,
  values?: unknown[],
): Promise<pg.QueryResult<R>> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, result: pg.QueryResult<R>) => (err ? reject(err) : resolve(result));
    if (typeof query === 'string' && values !== undefined) client.query<R>(query, values, done);
    else client.query<R>(query, done);
  });
}
