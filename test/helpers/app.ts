import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { inject } from 'vitest';
import { buildApp } from '../../src/app.js';
import { mintToken } from '../../src/auth/jwt.js';
import { loadConfig, type Config } from '../../src/config.js';
import { openDatabase, type Database } from '../../src/db/database.js';
import { TEMPLATE_DB_ENV, TEMPLATE_SNAPSHOT_ENV, TEST_DATABASE_URL } from './env.js';
import { ApiClient } from './http.js';

export const JWT_SECRET = randomBytes(32).toString('hex');

export interface TestApp {
  app: FastifyInstance;
  baseUrl: string;
  database: Database;
  config: Config;
  /** A client with no credentials; `.as(...)` gives one with. */
  api: ApiClient;
  token(claims: { role: 'customer' | 'ops' | 'admin'; customerId?: string; sub?: string }, ttlSeconds?: number): Promise<string>;
  close(): Promise<void>;
}

/** A fresh database for one test file: a copy of the migrated template (Postgres) or snapshot (PGlite). */
export async function freshDatabase(): Promise<{ database: Database; url?: string; drop(): Promise<void> }> {
  if (TEST_DATABASE_URL) {
    const name = `orderstream_test_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
    const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await admin.connect();
    await admin.query(`create database ${name} template ${inject(TEMPLATE_DB_ENV)}`);
    const url = new URL(TEST_DATABASE_URL);
    url.pathname = `/${name}`;
    const database = await openDatabase({ url: url.toString(), poolSize: 10 });
    return {
      database,
      url: url.toString(),
      async drop() {
        await database.close();
        await admin.query(`drop database if exists ${name} with (force)`);
        await admin.end();
      },
    };
  }
  const snapshot = readFileSync(inject(TEMPLATE_SNAPSHOT_ENV));
  const pglite = new PGlite({ loadDataDir: new Blob([snapshot]) });
  const database = await openDatabase({ pglite });
  return { database, drop: () => database.close() };
}

/** The built app on a fresh database, listening on a random port of 127.0.0.1: real HTTP. */
export async function startTestApp(env: Record<string, string> = {}, logStream?: NodeJS.WritableStream): Promise<TestApp> {
  const { database, drop } = await freshDatabase();
  const config = loadConfig({ NODE_ENV: 'test', JWT_SECRET, LOG_LEVEL: logStream ? 'info' : 'silent', ...env });
  const app = await buildApp({ config, database, ...(logStream ? { logStream } : { logger: false }) });
  const baseUrl = await app.listen({ port: 0, host: '127.0.0.1' });
  const token: TestApp['token'] = (claims, ttl = 3600) =>
    mintToken(JWT_SECRET, { sub: claims.sub ?? `${claims.role}-test`, role: claims.role, customerId: claims.customerId }, ttl);
  return {
    app,
    baseUrl,
    database,
    config,
    api: new ApiClient(baseUrl),
    token,
    async close() {
      await app.close();
      await drop();
    },
  };
}
