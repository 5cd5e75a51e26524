import type { CompiledQuery } from 'kysely';
import type { Socket } from 'node:net';
import type pg from 'pg';
import { clientQuery } from './client-query.js';
import type { Database } from './database.js';

/**
 * The statements of one write transaction, handed over a few at a time. On a real Postgres the
 * statements of one run() are pipelined: sent together, with BEGIN in front of the first run and
 * COMMIT behind the last, so an append is two round trips (lock and load; write and commit)
 * instead of six. On the embedded database they run one after the other, as any transaction.
 */
export interface Flight {
  /**
   * Runs the statements in order; the rows of each. `commit` ends the transaction with them, and
   * `then` goes right behind the commit (see Rider).
   */
  run(queries: CompiledQuery[], opts?: { commit?: boolean; then?: Rider }): Promise<Array<Array<Record<string, unknown>>>>;
}

/**
 * A read sent in the same write as a transaction's COMMIT, on the same connection, and run by
 * Postgres right after it: it sees what the transaction committed, with no round trip and no
 * wake-up of a backend of its own (the stream tail's read of what was just appended). It runs
 * whether the transaction committed or not, and its rows go to `take` without holding up the
 * transaction's caller; `drop` is called instead when it could not run (the embedded database,
 * a connection lost).
 */
export interface Rider {
  query: CompiledQuery;
  take(rows: Array<Record<string, unknown>>): void;
  drop(): void;
}

// Statements whose text never changes, by text: their name on every connection that prepared them.
const preparedNames = new Map<string, string>();
// Every connection keeps what it prepared (pg has no DEALLOCATE), so each kind has a budget: the
// write path's and the tail's texts are a fixed handful; the lists' vary with their filters, and
// past their budget the rest run unnamed, without taking a name from the write path.
const BUDGET = { write: 64, read: 64 };
const named = { write: 0, read: 0 };

/** The name a statement marked prepared() runs under, if it is one. */
export const preparedName = (text: string): string | undefined => (unnamed.has(text) ? undefined : preparedNames.get(text));
const unnamed = new Set<string>();
/** Runs this text unnamed from now on (its prepared form went stale: db/database.ts). */
export const forgetPrepared = (text: string) => void unnamed.add(text);

/**
 * Marks a statement as prepared: its text must not vary from call to call (values travel as
 * parameters). Each connection parses it once and keeps it: on the write path, with one generic
 * plan (planning these statements cost Postgres as much as running them: pg_stat_statements,
 * BENCHMARKS.md); on the read pool (`read`), Postgres itself chooses between planning each call
 * for its values and a generic plan (plan_cache_mode auto), so a list whose plan depends on its
 * values keeps its custom plans, and one that does not stops paying for planning after five calls.
 */
export function prepared<R>(q: CompiledQuery<R>, kind: keyof typeof BUDGET = 'write'): CompiledQuery<R> {
  if (!preparedNames.has(q.sql) && named[kind] < BUDGET[kind]) preparedNames.set(q.sql, `os_${kind}_${named[kind]++}`);
  return q;
}

/** Runs one statement on its own; its rows. */
export type Run = <R>(q: CompiledQuery) => Promise<R[]>;

/** Runs statements marked prepared() as named prepared statements on `pool`; through Kysely without one (embedded). */
const runnerOn = (database: Database, pool: pg.Pool | undefined): Run =>
  pool
    ? async <R>(q: CompiledQuery) => (await pool.query({ name: preparedName(q.sql), text: q.sql, values: q.parameters as unknown[] })).rows as R[]
    : async <R>(q: CompiledQuery) => (await database.db.executeQuery(q)).rows as R[];

/**
 * Runs statements marked prepared() on the write path's connections (one generic plan each): for
 * the reads that run hundreds of times a second with the same text, like the stream tail's, where
 * planning cost Postgres 0.22 ms per read (pg_stat_statements). On the embedded database, through Kysely.
 */
export const preparedRunner = (database: Database): Run => runnerOn(database, database.pipelinePool);

/**
 * Runs statements marked prepared() with their generic plan, on read connections of their own:
 * for the lists whose plan their design fixes (each branch reads an index in its order up to a
 * page: orders/list.ts), where Postgres, left to choose (plan_cache_mode auto), planned the late
 * list again on every call. On the embedded database, through Kysely.
 */
export const fixedPlanRunner = (database: Database): Run => runnerOn(database, database.fixedPlanPool);

/** Runs `fn` in a write transaction: committed when it returns (if not already), rolled back if it throws. */
export type WriteTransaction = <T>(fn: (flight: Flight) => Promise<T>) => Promise<T>;

export function writeTransactions(database: Database): WriteTransaction {
  const pool = database.pipelinePool;
  if (!pool) {
    return (fn) =>
      database.db.transaction().execute((tx) =>
        fn({
          async run(queries, opts) {
            opts?.then?.drop(); // one statement at a time, inside Kysely's transaction: nothing can follow its commit
            const out: Array<Array<Record<string, unknown>>> = [];
            for (const q of queries) out.push((await tx.executeQuery(q)).rows as Array<Record<string, unknown>>);
            return out;
          },
        }),
      );
  }
  return async (fn) => {
    const client = await pool.connect();
    let begun = false;
    let ended = false;
    let broken = false;
    let riding: Promise<unknown> | undefined;
    const flight: Flight = {
      async run(queries, opts) {
        if (!begun && !queries.length) {
          if (opts?.commit) ended = true; // nothing was ever sent: nothing to commit
          opts?.then?.drop();
          return [];
        }
        // Sent at once, before any answer is awaited: the client is in pipeline mode.
        const sent: Array<Promise<pg.QueryResult>> = [];
        const offset = begun ? 0 : 1;
        // pg writes each statement to the socket on its own; corked, the flight is one write (one
        // system call and one wake-up of the backend instead of one per statement).
        const socket = (client as unknown as { connection?: { stream?: Partial<Pick<Socket, 'cork' | 'uncork'>> } }).connection
          ?.stream;
        socket?.cork?.();
        let rider = opts?.then;
        try {
          if (!begun) sent.push(clientQuery(client, 'begin'));
          begun = true;
          for (const q of queries)
            sent.push(clientQuery(client, { name: preparedName(q.sql), text: q.sql, values: q.parameters as unknown[] }));
          if (opts?.commit) {
            sent.push(clientQuery(client, 'commit'));
            ended = true; // a commit behind a failed statement rolls back: either way the transaction is over
            if (rider) {
              const { query: q, take, drop } = rider;
              rider = undefined;
              riding = clientQuery(client, { name: preparedName(q.sql), text: q.sql, values: q.parameters as unknown[] }).then(
                (r) => take(r.rows),
                () => drop(),
              );
            }
          }
        } finally {
          socket?.uncork?.();
          rider?.drop(); // not sent (no commit here, or a throw before it): the tail reads as usual
        }
        const settled = await Promise.allSettled(sent);
        const failed = settled.find((s) => s.status === 'rejected');
        if (failed) throw (failed as PromiseRejectedResult).reason;
        return settled
          .slice(offset, offset + queries.length)
          .map((s) => (s as PromiseFulfilledResult<pg.QueryResult>).value.rows);
      },
    };
    try {
      const result = await fn(flight);
      if (begun && !ended) await clientQuery(client, 'commit');
      return result;
    } catch (err) {
      if (begun && !ended) await clientQuery(client, 'rollback').catch(() => (broken = true));
      throw err;
    } finally {
      // The connection goes back to the pool once the read behind the commit has its rows.
      const release = () => client.release(broken || undefined);
      if (riding) void riding.then(release, release);
      else release();
    }
  };
}
