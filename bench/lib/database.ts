import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import { openDatabase, type Database } from '../../src/db/database.js';
import { migrateToLatest } from '../../src/db/migrator.js';

export interface BenchDatabase {
  url: string;
  name: string;
  database: Database;
  /** Postgres's own version string, for the machine section. */
  version: string;
  /**
   * VACUUM (ANALYZE) of the whole database: what autovacuum does between a cluster's bursts of
   * writes. Run before each measured phase, so that none inherits the dead rows of the one before.
   */
  vacuum(): Promise<void>;
  /**
   * Writes out what the phases before left dirty (CHECKPOINT, a superuser's or pg_checkpoint's),
   * so that a phase on another database of the machine does not run beside the checkpoint their
   * WAL triggers.
   */
  checkpoint(): Promise<void>;
  /**
   * When each of these events' transactions committed (ms since the epoch), from the commit
   * timestamps Postgres keeps when `track_commit_timestamp` is on; undefined when it is off.
   */
  commitTimes(eventIds: string[]): Promise<Map<string, number> | undefined>;
  drop(): Promise<void>;
}

/** A migrated database of the bench's own, `orderstream_bench_<random>`, dropped at the end. */
export async function createBenchDatabase(serverUrl: string): Promise<BenchDatabase> {
  const name = `orderstream_bench_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const database = await openDatabase({ url: url.toString(), poolSize: 16, statementTimeoutMs: 600_000 });
  await migrateToLatest(database.db);
  const version = (await admin.query<{ v: string }>('select current_setting($1) as v', ['server_version'])).rows[0]!.v;
  return {
    url: url.toString(),
    name,
    database,
    version,
    async vacuum() {
      await sql`vacuum (analyze)`.execute(database.db);
    },
    async checkpoint() {
      await sql`checkpoint`.execute(database.db);
    },
    async commitTimes(eventIds) {
      const { rows: on } = await sql<{ on: string }>`select current_setting('track_commit_timestamp') as on`.execute(database.db);
      if (on[0]!.on !== 'on') return undefined;
      // Taken as the commit record is written, before its WAL flush: the flush counts against the figure.
      const { rows } = await sql<{ id: string; ms: number }>`
        select id::text as id, (extract(epoch from pg_xact_commit_timestamp(xmin)) * 1000)::float8 as ms
        from events where id = any(${eventIds}::uuid[])`.execute(database.db);
      return new Map(rows.filter((r) => r.ms !== null).map((r) => [r.id, r.ms]));
    },
    async drop() {
      await database.close().catch(() => undefined);
      await admin.query(`drop database if exists ${name} with (force)`);
      await admin.end();
    },
  };
}
