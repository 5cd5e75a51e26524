import { randomBytes, randomUUID } from 'node:crypto';
import { PGlite } from '@electric-sql/pglite';
import { sql, type Kysely } from 'kysely';
import { Migrator } from 'kysely/migration';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { migrations } from '../migrations/index.js';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { openDatabase, type Database } from '../src/db/database.js';
import { migrateToLatest, pendingMigrations } from '../src/db/migrator.js';
import { startTestApp } from './helpers/app.js';
import { ON_REAL_POSTGRES, TEST_DATABASE_URL } from './helpers/env.js';

// The migrations bring an EMPTY database to the current schema on both engines, a second run does
// nothing, and /readyz tells a migrated database from one that is not.

const ALL = Object.keys(migrations);
const TABLES = ['customers', 'engineers', 'factories', 'api_keys', 'orders', 'order_steps', 'events', 'idempotency_keys'];

async function tablesOf(db: Kysely<any>): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`
    select table_name as name from information_schema.tables
    where table_schema = 'public' and table_type = 'BASE TABLE' order by 1`.execute(db);
  return rows.map((r) => r.name);
}

/** (table, column, type, nullable) of every column in public, for comparing the two engines. */
async function columnsOf(db: Kysely<any>): Promise<string[]> {
  const { rows } = await sql<{ c: string }>`
    select table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable as c
    from information_schema.columns where table_schema = 'public' order by 1`.execute(db);
  return rows.map((r) => r.c);
}

/** An empty database on the real Postgres, created for one test and dropped after it. */
async function emptyPostgres(): Promise<{ database: Database; drop(): Promise<void> }> {
  const name = `orderstream_empty_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
  const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await admin.connect();
  await admin.query(`create database ${name}`);
  const url = new URL(TEST_DATABASE_URL!);
  url.pathname = `/${name}`;
  const database = await openDatabase({ url: url.toString(), poolSize: 4 });
  return {
    database,
    async drop() {
      await database.close().catch(() => undefined);
      await admin.query(`drop database if exists ${name} with (force)`);
      await admin.end();
    },
  };
}

/** An empty database on the engine of this run. */
async function emptyDatabase(): Promise<{ database: Database; drop(): Promise<void> }> {
  if (ON_REAL_POSTGRES) return emptyPostgres();
  const database = await openDatabase({ pglite: new PGlite() });
  return { database, drop: () => database.close() };
}

async function expectMigratesFromEmpty(database: Database) {
  const db = database.db as Kysely<any>;
  expect(await tablesOf(db)).toEqual([]);
  expect(await pendingMigrations(db)).toEqual(ALL);

  expect(await migrateToLatest(db)).toEqual(ALL);
  expect(await tablesOf(db)).toEqual(expect.arrayContaining(TABLES));
  expect(await pendingMigrations(db)).toEqual([]);
  // Orders are updated by every event: vacuumed far more often than autovacuum's default (0012).
  const { rows } = await sql<{ options: string[] }>`select reloptions as options from pg_class where relname = 'orders'`.execute(db);
  expect(rows[0]!.options).toEqual(expect.arrayContaining(['autovacuum_vacuum_scale_factor=0.01', 'autovacuum_vacuum_threshold=1000']));
  // Each update of an order writes every index of orders: the at-risk list keeps one, not two (0013).
  const indexes = (await sql<{ name: string }>`select indexname as name from pg_indexes where tablename = 'orders'`.execute(db)).rows.map((r) => r.name);
  expect(indexes).toContain('orders_unfinished_at_risk_due');
  expect(indexes).not.toContain('orders_unfinished_at_risk');
  // A step's pages keep room for the next version of a step, so a progress update can be HOT (0014).
  const steps = await sql<{ options: string[] }>`select reloptions as options from pg_class where relname = 'order_steps'`.execute(db);
  expect(steps.rows[0]!.options).toEqual(expect.arrayContaining(['fillfactor=70']));
  // The tables work: a customer goes in and comes back.
  await sql`insert into customers (id, name, country) values (${randomUUID()}, 'Probe GmbH', 'DE')`.execute(db);
  expect((await sql<{ n: number }>`select count(*)::int as n from customers`.execute(db)).rows[0]!.n).toBe(1);

  // A second run is a no-op: nothing applied, nothing changed.
  const columns = await columnsOf(db);
  expect(await migrateToLatest(db)).toEqual([]);
  expect(await pendingMigrations(db)).toEqual([]);
  expect(await columnsOf(db)).toEqual(columns);
  return columns;
}

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

describe('migrations on an empty database', () => {
  let embeddedColumns: string[] | undefined;

  it('the embedded engine (a new PGlite): every migration applies, a second run does nothing', async () => {
    const database = await openDatabase({ pglite: new PGlite() });
    try {
      embeddedColumns = await expectMigratesFromEmpty(database);
    } finally {
      await database.close();
    }
  });

  it.skipIf(!ON_REAL_POSTGRES)(
    'the real Postgres (a new database): every migration applies, a second run does nothing',
    async () => {
      const empty = await emptyPostgres();
      try {
        const columns = await expectMigratesFromEmpty(empty.database);
        // The same SQL gives the same schema on both engines.
        if (embeddedColumns) expect(columns).toEqual(embeddedColumns);
      } finally {
        await empty.drop();
      }
    },
  );
});

describe('GET /readyz', () => {
  const config = () => loadConfig({ NODE_ENV: 'test', JWT_SECRET: randomBytes(32).toString('hex'), LOG_LEVEL: 'silent' });

  it('is 200 on a migrated app', async () => {
    const t = await startTestApp();
    cleanups.push(() => t.close());
    const r = await t.api.get('/readyz');
    expect(r.status, r.text).toBe(200);
    expect(r.body).toEqual({ status: 'ready', database: ON_REAL_POSTGRES ? 'postgres' : 'embedded' });
    await t.close();
    cleanups.pop();
  });

  /** The app on a database not fully migrated: its readiness is a 503 problem with Retry-After. */
  async function notReadyOn(database: Parameters<typeof buildApp>[0]['database']) {
    const app = await buildApp({ config: config(), database, logger: false });
    cleanups.push(() => app.close());
    const r = await app.inject({ method: 'GET', url: '/readyz' });
    expect(r.statusCode, r.body).toBe(503);
    expect(r.headers['content-type']).toContain('application/problem+json');
    expect(r.headers['retry-after']).toBeDefined();
    return { app, body: r.json() };
  }

  it('is 503 problem+json, naming the pending migrations, on an app whose database has none applied', async () => {
    const empty = await emptyDatabase();
    cleanups.push(() => empty.drop());
    // The app must come up on an unmigrated database (a shared Postgres is migrated as a
    // deployment step), so that readiness can say why it is not ready.
    const { app, body } = await notReadyOn(empty.database);
    expect(body.status).toBe(503);
    expect(body.detail).toContain(ALL[0]!);
    expect(body.detail).toContain(ALL.at(-1)!);

    // Once migrated, the same app is ready.
    await migrateToLatest(empty.database.db);
    const after = await app.inject({ method: 'GET', url: '/readyz' });
    expect(after.statusCode, after.body).toBe(200);
  });

  it('is 503 problem+json on an app whose database lacks the latest migration, and 200 once it is applied', async () => {
    const empty = await emptyDatabase();
    cleanups.push(() => empty.drop());
    const db = empty.database.db as Kysely<any>;
    const previous = ALL.at(-2)!;
    const latest = ALL.at(-1)!;
    const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } });
    const { error } = await migrator.migrateTo(previous);
    expect(error).toBeUndefined();
    expect(await pendingMigrations(db)).toEqual([latest]);

    const { app, body } = await notReadyOn(empty.database);
    expect(body).toMatchObject({ status: 503, detail: expect.stringContaining(latest) });
    expect(body.detail).not.toContain(previous);

    expect(await migrateToLatest(db)).toEqual([latest]);
    const after = await app.inject({ method: 'GET', url: '/readyz' });
    expect(after.statusCode, after.body).toBe(200);
    expect(after.json()).toMatchObject({ status: 'ready' });
  });
});
