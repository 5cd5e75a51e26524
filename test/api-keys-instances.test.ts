// Verified API keys are kept in memory by each instance (auth/key-cache.ts). What must hold:
// a key revoked on one instance is refused by the others as soon as they hear of it, and an
// instance that lost its LISTEN connection trusts nothing it kept, so it refuses a key revoked
// while it was not listening on the very next request.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../src/auth/jwt.js';
import { JWT_SECRET } from './helpers/app.js';
import { skipWithoutRealPostgres } from './helpers/env.js';
import { sleep } from './helpers/ingest-load.js';
import { twoInstances, type ServerProcess } from './helpers/processes.js';

describe.skipIf(skipWithoutRealPostgres())('API keys across instances', () => {
  let instances: Awaited<ReturnType<typeof twoInstances>> | undefined;
  let A: ServerProcess;
  let B: ServerProcess;
  let admin: string;
  let factoryId: string;

  beforeAll(async () => {
    instances = await twoInstances();
    ({ a: A, b: B } = instances);
    admin = await mintToken(JWT_SECRET, { sub: 'admin-test', role: 'admin' }, 3600);
    const f = await post(A, '/v1/factories', { name: 'Shangrao PCB 9', kind: 'fabrication', country: 'CN', timezone: 'Asia/Shanghai' });
    factoryId = f.id;
  }, 90_000);
  afterAll(() => instances?.stop());

  async function post(s: ServerProcess, path: string, body: unknown) {
    const r = await fetch(`${s.baseUrl}${path}`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect(r.status, await r.clone().text()).toBe(201);
    return (await r.json()) as { id: string; key: string };
  }
  const revoke = async (s: ServerProcess, id: string) =>
    expect((await fetch(`${s.baseUrl}/v1/api-keys/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${admin}` } })).status).toBe(204);
  const statusWith = async (s: ServerProcess, key: string) => (await fetch(`${s.baseUrl}/v1/orders`, { headers: { 'x-api-key': key } })).status;

  it('a key revoked on A is refused by A at once and by B as soon as B hears of it', async () => {
    const k = await post(A, `/v1/factories/${factoryId}/api-keys`, { label: 'mes' });
    for (let i = 0; i < 3; i++) expect([await statusWith(A, k.key), await statusWith(B, k.key)]).toEqual([200, 200]);
    await revoke(A, k.id);
    expect(await statusWith(A, k.key)).toBe(401);
    const start = Date.now();
    while ((await statusWith(B, k.key)) !== 401) {
      expect(Date.now() - start, 'B still accepts the revoked key').toBeLessThan(2000);
      await sleep(5);
    }
    for (let i = 0; i < 5; i++) expect(await statusWith(B, k.key)).toBe(401);
  });

  it('an instance that lost its LISTEN connection refuses, on the next request, a key revoked meanwhile', async () => {
    const k = await post(A, `/v1/factories/${factoryId}/api-keys`, { label: 'mes 2' });
    expect([await statusWith(A, k.key), await statusWith(B, k.key)]).toEqual([200, 200]); // both keep it
    const admin = new pg.Client({ connectionString: instances!.db.url });
    await admin.connect();
    try {
      // Every instance's listener goes (A's too: it does not matter who revokes).
      const { rowCount } = await admin.query(`select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and query ilike 'listen %'`);
      expect(rowCount).toBe(2);
      // Within the listener's reconnect delay (250 ms): the instances know they are not listening.
      await sleep(100);
      await revoke(A, k.id);
      expect(await statusWith(B, k.key)).toBe(401);
      expect(await statusWith(A, k.key)).toBe(401);
    } finally {
      await admin.end();
    }
  });
});
