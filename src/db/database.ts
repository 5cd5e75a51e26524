import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import { Kysely, PGliteDialect, PostgresDialect, type LogEvent } from 'kysely';
import pg from 'pg';
import type { FastifyBaseLogger as Logger } from 'fastify';
import { clientQuery } from './client-query.js';
import { forgetPrepared, preparedName } from './flight.js';
import type { DB } from './schema.js';

export type DatabaseKind = 'postgres' | 'embedded';

/** One handle on the store of truth, whichever engine is behind it. */
export interface Database {
  readonly kind: DatabaseKind;
  readonly db: Kysely<DB>;
  /** The raw pool (real Postgres only): the stream tailer needs a dedicated LISTEN connection. */
  readonly pool?: pg.Pool;
  /** Connections in pipeline mode for the append path (real Postgres only): see db/flight.ts. */
  readonly pipelinePool?: pg.Pool;
  /**
   * Read connections that run every prepared statement with its one generic plan (real Postgres
   * only): for the lists whose plan is fixed by their design (db/flight.ts fixedPlanRunner).
   */
  readonly fixedPlanPool?: pg.Pool;
  /** The connection string (real Postgres only), for connections outside the pool. */
  readonly url?: string;
  /** The PGlite instance (embedded only). */
  readonly pglite?: PGlite;
  close(): Promise<void>;
}

export type DatabaseOptions =
  | { url: string; poolSize?: number; statementTimeoutMs?: number; connectTimeoutMs?: number; logger?: Logger }
  | { dataDir: string; logger?: Logger }
  | { pglite: PGlite; logger?: Logger };

// How values come back, the same on both engines: int8 as a JS number (every int8 we store stays
// far below 2^53: positions, counts), numeric as a string, timestamptz as a Date.
const INT8_OID = 20;
const TIMESTAMPTZ_OID = 1184;
const parseTimestamptzGeneric = pg.types.getTypeParser(TIMESTAMPTZ_OID, 'text') as (v: string) => Date;
// Postgres writes a timestamptz as `2026-11-29 08:49:18.123456+00` (offset +HH or +HH:MM). Read
// here digit by digit into Date.UTC, two to three times as fast as a regular expression and Date's
// string parser, and than pg's generic parser: a page of 50 orders carries some 3,000 timestamps.
// Anything else (BC, infinity, years before 1000, offsets with seconds) goes the generic way.
// Fractions are cut to milliseconds, as Date keeps them.
const digitsAt = (v: string, i: number, n: number): number => {
  let x = 0;
  for (let k = i; k < i + n; k++) {
    const d = v.charCodeAt(k) - 48;
    if (d < 0 || d > 9) return NaN;
    x = x * 10 + d;
  }
  return x;
};
const parseTimestamptz = (v: string): Date => {
  // YYYY-MM-DD HH:MM:SS
  if (
    v.length >= 22 &&
    v.charCodeAt(4) === 45 &&
    v.charCodeAt(7) === 45 &&
    v.charCodeAt(10) === 32 &&
    v.charCodeAt(13) === 58 &&
    v.charCodeAt(16) === 58
  ) {
    let i = 19;
    let ms = 0;
    if (v.charCodeAt(i) === 46) {
      let scale = 100;
      for (i++; i < v.length; i++) {
        const d = v.charCodeAt(i) - 48;
        if (d < 0 || d > 9) break;
        ms += d * scale;
        scale /= 10;
      }
      ms = Math.floor(ms);
    }
    const sign = v.charCodeAt(i) === 43 ? 1 : v.charCodeAt(i) === 45 ? -1 : 0;
    const end = v.length - i;
    const offset =
      end === 3
        ? digitsAt(v, i + 1, 2) * 60
        : end === 6 && v.charCodeAt(i + 3) === 58
          ? digitsAt(v, i + 1, 2) * 60 + digitsAt(v, i + 4, 2)
          : NaN;
    const year = digitsAt(v, 0, 4);
    const t =
      Date.UTC(year, digitsAt(v, 5, 2) - 1, digitsAt(v, 8, 2), digitsAt(v, 11, 2), digitsAt(v, 14, 2), digitsAt(v, 17, 2), ms) -
      sign * offset * 60_000;
    if (sign && year >= 1000 && !Number.isNaN(t)) return new Date(t);
  }
  return parseTimestamptzGeneric(v);
};
const pgTypes = {
  getTypeParser: (oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID
      ? (v: string) => Number(v)
      : oid === TIMESTAMPTZ_OID && format !== 'binary'
        ? parseTimestamptz
        : pg.types.getTypeParser(oid, format),
};

function queryLog(logger: Logger | undefined) {
  if (!logger) return undefined;
  return (event: LogEvent) => {
    if (event.level === 'error') {
      logger.debug({ sql: event.query.sql, ms: event.queryDurationMillis, err: event.error }, 'query failed');
    } else if (logger.level === 'debug' || logger.level === 'trace') {
      logger.debug({ sql: event.query.sql, ms: event.queryDurationMillis }, 'query');
    }
  };
}

// A column added to a table under a running instance (a rolling deploy): Postgres refuses the
// prepared `select *` a connection kept.
const isStalePreparedResult = (err: unknown) =>
  (err as { code?: string }).code === '0A000' && /cached plan must not change result type/.test((err as Error).message);

/**
 * Kysely's view of the read pool: a statement marked prepared() (db/flight.ts) runs as a named
 * prepared statement on the connection it gets; anything else as before. Each connection is
 * wrapped once (Kysely asks the pool for one per query).
 */
function namingPreparedStatements(pool: pg.Pool): pg.Pool {
  const wrapped = new WeakMap<pg.PoolClient, pg.PoolClient>();
  const wrap = (client: pg.PoolClient) => {
    const query = async (text: unknown, values?: unknown[]) => {
      const name = typeof text === 'string' ? preparedName(text) : undefined;
      if (!name) return clientQuery(client, text as string, values);
      try {
        return await clientQuery(client, { name, text: text as string, values });
      } catch (err) {
        if (!isStalePreparedResult(err)) throw err;
        forgetPrepared(text as string); // from then on this text runs unnamed
        return clientQuery(client, text as string, values);
      }
    };
    const proxy = new Proxy(client, {
      get: (target, prop, receiver) => (prop === 'query' ? query : Reflect.get(target, prop, receiver)),
    });
    wrapped.set(client, proxy);
    return proxy;
  };
  return new Proxy(pool, {
    get(target, prop) {
      if (prop === 'connect')
        return async () => {
          const client = await target.connect();
          return wrapped.get(client) ?? wrap(client);
        };
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

const brief = (err: Error & { code?: string }) => ({ reason: err.message, code: err.code });

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if ('url' in options) {
    const makePool = (pipeline: boolean, fixedPlans = pipeline, max = options.poolSize ?? 10) => {
      const pool = new pg.Pool({
        connectionString: options.url,
        max,
        // While the database is down or saturated, a request waits at most this long for a
        // connection, then fails as a 503: no request hangs on an outage.
        connectionTimeoutMillis: options.connectTimeoutMs ?? 3_000,
        // A stuck statement or an abandoned transaction must not hold rows or the stream tail back.
        statement_timeout: options.statementTimeoutMs ?? 15_000,
        idle_in_transaction_session_timeout: 15_000,
        // No JIT: it pays off for long analytic scans, not for millisecond queries. The stream
        // tail's estimate (a subquery per event) crossed jit_above_cost on the bench world, and
        // compiling took 177 ms of a query that ran in 1.5 ms (auto_explain), on every read.
        // The write path's statements are prepared (db/flight.ts) and always the same shape, so
        // one generic plan serves them all; left to choose, Postgres re-plans them on every call.
        options: fixedPlans ? '-c jit=off -c plan_cache_mode=force_generic_plan' : '-c jit=off',
        // A generic plan is made once per connection, with the statistics of that moment: one made
        // while a table was small (a new database, a cluster without autovacuum) would outlive
        // its growth. These connections are replaced every ten minutes, so plans follow the data.
        ...(fixedPlans ? { maxLifetimeSeconds: 600 } : {}),
        types: pgTypes,
        pipeline,
      });
      // An idle client that loses its server emits 'error' on the pool; without a listener it crashes.
      // (pg attaches the client to the error: log the error's own fields, not the whole client.)
      pool.on('error', (err) => options.logger?.warn(brief(err), 'idle database connection lost'));
      // A client checked out of the pool has no 'error' listener of the pool's, so a connection lost
      // while Kysely holds it (a backend terminated, the server restarting) would be an uncaught
      // error that ends the process. Its query fails all the same (a 503), and the pool drops it.
      pool.on('connect', (client) =>
        client.on('error', (err) => options.logger?.warn(brief(err), 'database connection lost while in use')),
      );
      return pool;
    };
    const pool = makePool(false);
    // Connections open only when the append path first asks for one.
    const pipelinePool = makePool(true);
    // The lists that run with their generic plan (fixedPlanRunner): a few connections serve them,
    // opened when first asked for.
    const fixedPlanPool = makePool(false, true, Math.max(2, Math.ceil((options.poolSize ?? 10) / 4)));
    let closing: Promise<void> | undefined;
    const db = new Kysely<DB>({
      dialect: new PostgresDialect({ pool: namingPreparedStatements(pool) }),
      log: queryLog(options.logger),
    });
    return {
      kind: 'postgres',
      db,
      pool,
      pipelinePool,
      fixedPlanPool,
      url: options.url,
      close: () => (closing ??= Promise.all([db.destroy(), pipelinePool.end(), fixedPlanPool.end()]).then(() => undefined)),
    };
  }
  let pglite: PGlite;
  if ('pglite' in options) {
    pglite = options.pglite;
  } else {
    const dir = resolve(options.dataDir, 'pgdata');
    mkdirSync(dir, { recursive: true });
    // Loaded only here: a service on a real Postgres never pays for the embedded one's module.
    const { PGlite } = await import('@electric-sql/pglite');
    pglite = new PGlite(dir);
  }
  await pglite.waitReady;
  const db = new Kysely<DB>({ dialect: new PGliteDialect({ pglite }), log: queryLog(options.logger) });
  return { kind: 'embedded', db, pglite, close: () => db.destroy() };
}
