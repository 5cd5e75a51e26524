// Secrets stay secret: a run that passes keys and tokens everywhere a client might put them
// (headers, query strings, refused bodies, socket auth, forged variants that fail) at the most
// verbose log level, then reads every log line for them; keys are stored only as hashes (every
// table is read); and an error body, even for a real 500, carries no stack and no SQL.
import { createHash } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { sql } from 'kysely';
import { io as connect } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JWT_SECRET, startTestApp, type TestApp } from './helpers/app.js';
import { createWorld, type World } from './helpers/world.js';

let t: TestApp;
let w: World;
let log = '';
let key: string;
let keyId: string;
let token: string;
let order: any;

beforeAll(async () => {
  const stream = new PassThrough();
  stream.on('data', (chunk: Buffer) => (log += chunk.toString()));
  t = await startTestApp({ LOG_LEVEL: 'trace' }, stream);
  w = await createWorld(t);
  order = await w.createOrder();
  const k = await w.admin.post(`/v1/factories/${w.fab.id}/api-keys`, { label: 'secret test' });
  key = k.body.key;
  keyId = k.body.id;
  token = await t.token({ role: 'ops', sub: 'secret-ops' });
});
afterAll(() => t?.close());

// osk_<key id, 32 hex>_<secret, 43 base64url characters, which may contain _>
const secretOf = (k: string) => k.slice('osk_'.length + 32 + 1);

/** Everything a client might do with its credentials, right and wrong. */
async function useSecretsEverywhere() {
  const withKey = t.api.as({ apiKey: key });
  const withToken = t.api.as(token);
  const forgedKey = `${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`;
  const forgedToken = `${token.slice(0, -2)}xx`;
  await withKey.get(`/v1/orders/${order.id}`);
  await withToken.get('/v1/orders?limit=5');
  // in query strings, where no credential belongs
  await withToken.get(`/v1/orders?apiKey=${key}&token=${token}`);
  await t.api.get(`/v1/feed?topic=all&access_token=${token}&key=${encodeURIComponent(key)}`);
  await t.api.get(`/nowhere/${key}?jwt=${token}`);
  // in refused bodies
  await withToken.post('/v1/customers', { name: key, country: token });
  await withKey.post(`/v1/orders/${order.id}/events`, { type: 'note', text: 'x', secret: key, jwt: token });
  await t.api.request('POST', '/v1/customers', { raw: `{"name":"${key}","token":"${token}"`, headers: { 'content-type': 'application/json' } });
  // in the wrong headers, and forged or revoked
  await t.api.get('/v1/orders', { authorization: `Token ${token}` });
  await t.api.get('/v1/orders', { authorization: `Bearer ${key}` });
  await t.api.get('/v1/orders', { 'x-api-key': forgedKey });
  await t.api.get('/v1/orders', { authorization: `Bearer ${forgedToken}` });
  await t.api.get('/v1/orders', { 'x-request-id': key }); // not a sane request id: replaced, not logged
  // on sockets, accepted and refused
  for (const auth of [{ apiKey: key }, { token }, { apiKey: forgedKey }, { token: forgedToken }, { token: key }]) {
    await new Promise<void>((resolve) => {
      const s = connect(`${t.baseUrl}/v1`, { path: '/socket.io', auth, transports: ['websocket'], reconnection: false, forceNew: true });
      const done = () => {
        s.close();
        resolve();
      };
      s.once('connect', () => s.emit('subscribe', { topic: `factory:${w.fab.id}`, after: key }, done));
      s.once('connect_error', done);
    });
  }
  // over SSE, with the key in the header and the token in Last-Event-ID
  const controller = new AbortController();
  await fetch(`${t.baseUrl}/v1/stream?topic=factory:${w.fab.id}`, { headers: { 'x-api-key': key, 'last-event-id': token }, signal: controller.signal }).catch(() => undefined);
  controller.abort();
  // and revoked
  await w.admin.delete(`/v1/api-keys/${keyId}`);
  await withKey.get(`/v1/orders/${order.id}`);
}

describe('secrets', () => {
  it('no key, token, key secret, signature or JWT secret appears in any log line, at LOG_LEVEL=trace', async () => {
    await useSecretsEverywhere();
    await new Promise((r) => setTimeout(r, 200));
    const lines = log.split('\n').filter(Boolean);
    expect(lines.length).toBeGreaterThan(30); // the run was logged (not silent)
    expect(log).toContain('"url":"/v1/orders'); // and requests with their urls
    const secrets = { key, keySecret: secretOf(key), token, tokenSignature: token.split('.')[2]!, jwtSecret: JWT_SECRET };
    for (const [name, value] of Object.entries(secrets)) {
      const hits = lines.filter((l) => l.includes(value));
      expect(hits.map((l) => l.slice(0, 400)), `${name} found in the logs`).toEqual([]);
    }
  });

  it('a factory key is stored only as the SHA-256 of its secret: no table holds the key or its secret', async () => {
    const row = await t.database.db.selectFrom('api_keys').selectAll().where('id', '=', keyId).executeTakeFirstOrThrow();
    expect(Buffer.from(row.secret_hash).equals(createHash('sha256').update(secretOf(key)).digest())).toBe(true);
    expect(Object.keys(row).sort()).toEqual(['created_at', 'factory_id', 'id', 'label', 'revoked_at', 'secret_hash']);
    // every row of every table, as text
    for (const table of ['customers', 'engineers', 'factories', 'api_keys', 'orders', 'order_steps', 'events', 'idempotency_keys']) {
      const { rows } = await sql<{ t: string }>`select row_to_json(x)::text as t from ${sql.table(table)} x`.execute(t.database.db);
      for (const r of rows) {
        expect(r.t, table).not.toContain(secretOf(key));
        expect(r.t, table).not.toContain(token.split('.')[2]!);
      }
    }
    // the listing of keys shows no secret either
    const list = await w.admin.get(`/v1/factories/${w.fab.id}/api-keys`);
    expect(list.status).toBe(200);
    expect(list.text).not.toContain(secretOf(key));
  });

  it('a real 500 (a table gone from under the service) answers a bare problem: no stack, no SQL, a request id; the log has the cause', async () => {
    await sql`alter table customers rename to customers_gone`.execute(t.database.db);
    try {
      const r = await w.admin.get(`/v1/customers/${w.customerA.id}`);
      expect(r.status).toBe(500);
      expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(Object.keys(r.body).sort()).toEqual(['detail', 'instance', 'requestId', 'status', 'title', 'type']);
      const { instance, ...rest } = r.body;
      expect(instance).toBe(`/v1/customers/${w.customerA.id}`);
      expect(JSON.stringify(rest)).not.toMatch(/customers|relation|select|from |\bat \w|\.ts|node_modules|stack/i);
      expect(r.body.requestId).toBe(r.headers.get('x-request-id'));
      // the operator finds the cause under that request id
      await new Promise((res) => setTimeout(res, 100));
      const logged = log.split('\n').filter((l) => l.includes(r.body.requestId) && l.includes('"level":50'));
      expect(logged.join('\n')).toMatch(/customers/);
    } finally {
      await sql`alter table customers_gone rename to customers`.execute(t.database.db);
    }
  });

  it('problems for refused credentials say what is wrong without echoing the credential', async () => {
    const forged = `${token.slice(0, -2)}xx`;
    for (const r of [await t.api.get('/v1/orders', { authorization: `Bearer ${forged}` }), await t.api.get('/v1/orders', { 'x-api-key': key })]) {
      expect(r.status).toBe(401);
      expect(r.text).not.toContain(forged.split('.')[2]!);
      expect(r.text).not.toContain(secretOf(key));
    }
  });
});
