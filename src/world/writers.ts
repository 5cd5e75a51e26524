import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { sql, type Kysely } from 'kysely';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { DB } from '../db/schema.js';

export type Row = Record<string, unknown>;
export type TableRows = { table: 'customers' | 'engineers' | 'factories' | 'orders' | 'order_steps' | 'events'; rows: Row[] };

/** Where a generated world goes: each call is one transaction, its tables in the order given. */
export interface WorldWriter {
  write(tables: TableRows[]): Promise<void>;
  /** After the last write: rebuild what was set aside for the load, refresh statistics. */
  finish(): Promise<void>;
}

/** Multi-row inserts through Kysely: any database, the embedded one included. */
export function insertWriter(db: Kysely<DB>): WorldWriter {
  return {
    async write(tables) {
      await db.transaction().execute(async (tx) => {
        for (const { table, rows } of tables) {
          if (!rows.length) continue;
          // Under Postgres's 65,535 parameters per statement.
          const per = Math.floor(60_000 / Object.keys(rows[0]!).length);
          for (let i = 0; i < rows.length; i += per)
            await tx
              .insertInto(table)
              .values(rows.slice(i, i + per) as never)
              .execute();
        }
      });
    },
    // A bulk load leaves the planner without statistics where autovacuum is off or has not come
    // round yet: the order pages' step read then scanned every step (68 ms a page on the quick
    // world, 1.8 ms once analyzed; pg_stat_statements). The COPY writer analyzes too.
    async finish() {
      await sql`analyze orders, order_steps, events`.execute(db);
    },
  };
}

/** A text[] literal: every element quoted, quotes and backslashes escaped. */
const pgArray = (values: unknown[]) => `{${values.map((v) => `"${String(v).replace(/[\\"]/g, (c) => `\\${c}`)}"`).join(',')}}`;

/** A value as a CSV field for COPY: NULL is an unquoted empty field, anything else is quoted. */
function field(v: unknown): string {
  if (v === null || v === undefined) return '';
  const text =
    v instanceof Date
      ? v.toISOString()
      : Array.isArray(v)
        ? pgArray(v)
        : typeof v === 'object'
          ? JSON.stringify(v)
          : typeof v === 'boolean'
            ? v
              ? 't'
              : 'f'
            : String(v);
  return `"${text.replaceAll('"', '""')}"`;
}

/** One table's rows as COPY ... (format csv) input. */
const csv = (rows: Row[], columns: string[]) => rows.map((r) => columns.map((c) => field(r[c])).join(',')).join('\n') + '\n';

const BULK_TABLES = ['orders', 'order_steps', 'events'];

/**
 * COPY on one connection of a real Postgres, a transaction per write. Loading into empty tables,
 * it sets their secondary indexes and foreign keys aside and builds them once at the end (a sort
 * and a join, instead of millions of index insertions and lookups), as Postgres's "Populating a
 * Database" advises; keys and unique constraints stay, and the foreign keys are validated when
 * they come back. A load that dies halfway leaves a database to drop, not to use.
 */
export async function copyWriter(pool: pg.Pool): Promise<WorldWriter> {
  const client = await pool.connect();
  // A generated world can be made again: no need to wait for each chunk's WAL flush.
  await client.query('set synchronous_commit = off');
  // Rebuilding the indexes of 70 million events takes minutes: no statement timeout on this
  // connection. Nor an idle-in-transaction one: the transaction waits while the generator makes
  // the next chunk, which on a busy machine outlasted the pool's 15 s and lost a 30-minute load.
  await client.query('set statement_timeout = 0');
  await client.query('set idle_in_transaction_session_timeout = 0');
  const empty = (await client.query('select not exists (select 1 from events) and not exists (select 1 from orders) as empty'))
    .rows[0].empty as boolean;
  let indexes: Array<{ name: string; def: string }> = [];
  let foreignKeys: Array<{ table: string; name: string; def: string }> = [];
  if (empty) {
    indexes = (
      await client.query(
        `select i.indexname as name, i.indexdef as def from pg_indexes i
         where i.schemaname = current_schema() and i.tablename = any($1)
           and not exists (select 1 from pg_constraint c where c.conname = i.indexname)`,
        [BULK_TABLES],
      )
    ).rows;
    // Checked per row, a foreign key costs a lookup per row; checked once at the end, one join.
    foreignKeys = (
      await client.query(
        `select c.conrelid::regclass::text as table, c.conname as name, pg_get_constraintdef(c.oid) as def
         from pg_constraint c where c.contype = 'f' and c.conrelid::regclass::text = any($1)`,
        [BULK_TABLES],
      )
    ).rows;
    for (const { name } of indexes) await client.query(`drop index ${name}`);
    for (const fk of foreignKeys) await client.query(`alter table ${fk.table} drop constraint ${fk.name}`);
  }
  const copy = async (table: string, rows: Row[]) => {
    const columns = Object.keys(rows[0]!);
    const sql = `copy ${table} (${columns.map((c) => `"${c}"`).join(', ')}) from stdin (format csv)`;
    await pipeline(Readable.from([csv(rows, columns)]), client.query(copyFrom(sql)));
  };
  return {
    async write(tables) {
      await client.query('begin');
      try {
        for (const { table, rows } of tables) if (rows.length) await copy(table, rows);
        await client.query('commit');
      } catch (err) {
        await client.query('rollback').catch(() => undefined);
        throw err;
      }
    },
    async finish() {
      try {
        await client.query(`set maintenance_work_mem = '1GB'`);
        for (const { def } of indexes) await client.query(def);
        for (const fk of foreignKeys) await client.query(`alter table ${fk.table} add constraint ${fk.name} ${fk.def}`);
        // Index-only counts of the ops lists need the visibility map: vacuum what they read.
        await client.query('vacuum (analyze) orders, order_steps');
        await client.query('analyze events');
      } finally {
        client.release();
      }
    },
  };
}
