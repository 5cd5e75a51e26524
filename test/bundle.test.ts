// Production runs the server bundled into one file (scripts/bundle.ts, dist/server.mjs). A bundle
// can break what the sources do not: a package that looks for its own files, a require() of a
// built-in, the embedded database's module loaded on demand. So the bundle itself is started here,
// on the embedded database and on a real Postgres, and driven as users drive the service.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleServer } from '../scripts/bundle.js';
import { mintToken } from '../src/auth/jwt.js';
import { JWT_SECRET } from './helpers/app.js';
import { skipWithoutRealPostgres } from './helpers/env.js';
import { ApiClient } from './helpers/http.js';
import { StreamFollower, until } from './helpers/ingest-load.js';
import { sharedDatabase, startServer, type ServerProcess } from './helpers/processes.js';
import { createWorld } from './helpers/world.js';

// Inside the project: the packages left out of the bundle resolve from its node_modules.
const outdir = join('dist', `bundle-test-${process.pid}`);
const entry = [join(outdir, 'server.mjs')];

beforeAll(() => bundleServer(outdir), 60_000);
afterAll(() => rmSync(outdir, { recursive: true, force: true }));

/** Readiness, the docs, the board and its vendored script, then a world, an event and its delivery. */
async function exercise(s: ServerProcess, database: 'embedded' | 'postgres') {
  expect(await (await fetch(`${s.baseUrl}/readyz`)).json()).toMatchObject({ status: 'ready', database });
  const docs = await fetch(`${s.baseUrl}/docs/json`);
  expect(docs.status).toBe(200);
  expect(Object.keys(((await docs.json()) as { paths: object }).paths)).toContain('/v1/orders/{id}/events');
  expect((await fetch(`${s.baseUrl}/docs/`)).headers.get('content-type')).toMatch(/^text\/html/);
  const board = await fetch(`${s.baseUrl}/board`);
  expect([board.status, board.headers.get('content-type')]).toEqual([200, 'text/html; charset=utf-8']);
  expect((await fetch(`${s.baseUrl}/board/vendor/chart.umd.min.js`)).status).toBe(200);

  const token = (claims: { role: 'customer' | 'ops' | 'admin'; customerId?: string }) =>
    mintToken(JWT_SECRET, { sub: `${claims.role}-bundle`, role: claims.role, customerId: claims.customerId }, 3600);
  const w = await createWorld({ api: new ApiClient(s.baseUrl), token });
  const order = await w.createOrder();
  const follower = new StreamFollower(() => [s.baseUrl], { token: await token({ role: 'customer', customerId: w.customerA.id }) }, `order:${order.id}`);
  await follower.start();
  try {
    const posted = await w.post(w.fab.api, order.id, { type: 'stage_completed', stage: 'review' });
    await until(() => follower.events.length > 0, 10_000, 'the event on the order stream');
    expect(follower.events.map((e) => [e.id, e.type])).toEqual([[posted.id, 'stage_completed']]);
  } finally {
    follower.stop();
  }
}

describe('the bundled server (dist/server.mjs)', () => {
  it('runs on the embedded database', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'orderstream-bundle-'));
    const s = await startServer({ DATABASE_URL: '', DATA_DIR: dataDir }, entry);
    try {
      await exercise(s, 'embedded');
    } finally {
      expect(await s.kill()).toBe(0);
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 90_000);

  it.skipIf(skipWithoutRealPostgres())('runs on a real Postgres', async () => {
    const db = await sharedDatabase();
    const s = await startServer({ DATABASE_URL: db.url }, entry);
    try {
      await exercise(s, 'postgres');
    } finally {
      expect(await s.kill()).toBe(0);
      await db.drop();
    }
  }, 90_000);
});
