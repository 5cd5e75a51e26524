import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { openDatabase } from '../../src/db/database.js';
import { migrateToLatest } from '../../src/db/migrator.js';
import { migrations } from '../../migrations/index.js';
import { TEMPLATE_DB_ENV, TEMPLATE_SNAPSHOT_ENV, TEST_DATABASE_URL } from './env.js';

declare module 'vitest' {
  export interface ProvidedContext {
    [TEMPLATE_DB_ENV]: string;
    [TEMPLATE_SNAPSHOT_ENV]: string;
  }
}

/**
 * Migrates one database for the whole run; every test file then starts from a copy of it:
 * a database created from a template on Postgres, a restored data-directory snapshot on PGlite.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (TEST_DATABASE_URL) {
    const migrationsHash = createHash('sha256')
      .update(Object.keys(migrations).join(','))
      .digest('hex')
      .slice(0, 10);
    const template = `orderstream_tpl_${process.pid}_${migrationsHash}`;
    const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await admin.connect();
    await admin.query(`drop database if exists ${template}`);
    await admin.query(`create database ${template}`);
    const url = new URL(TEST_DATABASE_URL);
    url.pathname = `/${template}`;
    const database = await openDatabase({ url: url.toString(), poolSize: 1 });
    await migrateToLatest(database.db);
    await database.close();
    project.provide(TEMPLATE_DB_ENV, template);
    return async () => {
      await admin.query(`drop database if exists ${template} with (force)`).catch(() => undefined);
      await admin.end();
    };
  }
  const pglite = new PGlite();
  const database = await openDatabase({ pglite });
  await migrateToLatest(database.db);
  const dump = await pglite.dumpDataDir('gzip');
  const dir = mkdtempSync(join(tmpdir(), 'orderstream-test-'));
  const file = join(dir, 'migrated.tar.gz');
  writeFileSync(file, Buffer.from(await dump.arrayBuffer()));
  await database.close();
  project.provide(TEMPLATE_SNAPSHOT_ENV, file);
  return async () => rmSync(dir, { recursive: true, force: true });
}
