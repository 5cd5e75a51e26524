// Hostile credentials, each tried on the four doors: REST, the CSV export, SSE and the Socket.IO
// handshake. The access matrix (test/access-matrix.test.ts) already walks every REST route with
// the common forgeries; this table adds what it does not: the same refusals on sockets and CSV,
// tokens not yet valid, unknown roles, HS/RS algorithm confusion and embedded keys on a service
// that verifies RS256, and credentials that are genuine but point at someone else's data.
import { generateKeyPairSync, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import { exportJWK, SignJWT } from 'jose';
import { io as connect } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JWT_SECRET, startTestApp, type TestApp } from './helpers/app.js';
import { createWorld, type World } from './helpers/world.js';

const now = () => Math.floor(Date.now() / 1000);
const b64url = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

type Cred = { token: string } | { apiKey: string } | Record<string, never>;
interface Door {
  status: number;
  body: string;
}

/** Tries one credential on every door; a door refusing at the handshake or with 401 says so. */
async function knock(t: TestApp, cred: Cred, paths = { rest: '/v1/orders', topic: 'all' }): Promise<Record<'rest' | 'csv' | 'sse' | 'socket', Door>> {
  const headers: Record<string, string> =
    'token' in cred ? { authorization: `Bearer ${cred.token}` } : 'apiKey' in cred ? { 'x-api-key': cred.apiKey } : {};
  const get = async (path: string): Promise<Door> => {
    const controller = new AbortController();
    const res = await fetch(`${t.baseUrl}${path}`, { headers, signal: controller.signal });
    if ((res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
      controller.abort();
      return { status: res.status, body: '' };
    }
    const body = await res.text();
    if (res.status >= 400) expect(res.headers.get('content-type'), body).toMatch(/^application\/problem\+json/);
    return { status: res.status, body };
  };
  return {
    rest: await get(paths.rest),
    csv: await get('/v1/orders.csv'),
    sse: await get(`/v1/stream?topic=${paths.topic}`),
    socket: await handshake(t, cred, paths.topic),
  };
}

/** The Socket.IO door: a refused handshake gives its status; an accepted one subscribes to `topic`. */
function handshake(t: TestApp, cred: Cred, topic: string): Promise<Door> {
  return new Promise((resolve) => {
    const s = connect(`${t.baseUrl}/v1`, { path: '/socket.io', auth: cred, transports: ['websocket'], reconnection: false, forceNew: true, timeout: 5000 });
    s.once('connect_error', (err: Error & { data?: { status: number } }) => {
      s.close();
      resolve({ status: err.data?.status ?? 0, body: err.message });
    });
    s.once('connect', () =>
      s.emit('subscribe', { topic }, (ack: { ok: boolean; error?: { status: number } }) => {
        s.close();
        resolve({ status: ack.ok ? 200 : ack.error!.status, body: JSON.stringify(ack) });
      }),
    );
  });
}

const REFUSED = { rest: 401, csv: 401, sse: 401, socket: 401 };
const statuses = (d: Awaited<ReturnType<typeof knock>>) => ({ rest: d.rest.status, csv: d.csv.status, sse: d.sse.status, socket: d.socket.status });

function sign(claims: Record<string, unknown>, alg: string, key: Uint8Array | KeyObject, header: Record<string, unknown> = {}) {
  return new SignJWT(claims).setProtectedHeader({ alg, typ: 'JWT', ...header }).sign(key);
}
const secret = new TextEncoder().encode(JWT_SECRET);
const ops = (extra: Record<string, unknown> = {}) => ({ sub: 'mallory', role: 'ops', iat: now(), exp: now() + 3600, ...extra });

describe('hostile credentials on a service verifying HS256', () => {
  let t: TestApp;
  let w: World;
  let revokedKey: string;
  let offRouteKey: string;
  let order: any;
  beforeAll(async () => {
    t = await startTestApp({ RATE_LIMIT_ANONYMOUS_PER_MINUTE: '100000' });
    w = await createWorld(t);
    order = await w.createOrder();
    const k = await w.admin.post(`/v1/factories/${w.fab.id}/api-keys`, { label: 'to revoke' });
    expect((await w.admin.delete(`/v1/api-keys/${k.body.id}`)).status).toBe(204);
    revokedKey = k.body.key;
    const f = await w.admin.post('/v1/factories', { name: 'Elsewhere Testing', kind: 'testing', country: 'TW' });
    offRouteKey = (await w.admin.post(`/v1/factories/${f.body.id}/api-keys`, {})).body.key;
  });
  afterAll(() => t?.close());

  it('a genuine ops token opens every door (control)', async () => {
    expect(statuses(await knock(t, { token: await sign(ops(), 'HS256', secret) }))).toEqual({ rest: 200, csv: 200, sse: 200, socket: 200 });
  });

  const JWTS: Array<[string, () => Promise<string> | string]> = [
    ['alg none, no signature', () => `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(ops({ role: 'admin' }))}.`],
    ['alg none, with the genuine signature of another token', async () => {
      const good = await sign(ops(), 'HS256', secret);
      return `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(ops({ role: 'admin' }))}.${good.split('.')[2]}`;
    }],
    ['claims changed after signing (role ops to admin)', async () => {
      const [h, , s] = (await sign(ops(), 'HS256', secret)).split('.');
      return `${h}.${b64url(ops({ role: 'admin' }))}.${s}`;
    }],
    ['signed with another secret', () => sign(ops(), 'HS256', randomBytes(32))],
    ['the right secret under HS512 (the algorithm is pinned)', () => sign(ops(), 'HS512', secret)],
    ['no exp', () => sign({ sub: 'mallory', role: 'ops' }, 'HS256', secret)],
    ['expired a minute ago', () => sign(ops({ exp: now() - 60 }), 'HS256', secret)],
    ['not valid before an hour from now (nbf)', () => sign(ops({ nbf: now() + 3600 }), 'HS256', secret)],
    ['an unknown role (superuser)', () => sign(ops({ role: 'superuser' }), 'HS256', secret)],
    ['a role people cannot have (factory)', () => sign(ops({ role: 'factory', factoryId: randomUUID() }), 'HS256', secret)],
    ['role customer without customerId', () => sign(ops({ role: 'customer' }), 'HS256', secret)],
    ['role customer with a customerId that is not a uuid', () => sign(ops({ role: 'customer', customerId: "' or 1=1 --" }), 'HS256', secret)],
    ['an empty sub', () => sign(ops({ sub: '' }), 'HS256', secret)],
    ['exp as a string', () => sign(ops({ exp: String(now() + 3600) }), 'HS256', secret)],
    ['three dots of junk', () => 'a.b.c'],
    ['8 KB of junk', () => 'x'.repeat(8000)],
  ];

  it.each(JWTS)('JWT %s: 401 on REST, CSV, SSE and the socket handshake', async (_what, make) => {
    const doors = await knock(t, { token: await make() });
    expect(statuses(doors), JSON.stringify(doors)).toEqual(REFUSED);
  });

  const KEYS: Array<[string, () => string]> = [
    ['guessed, in the right format', () => `osk_${randomUUID().replaceAll('-', '')}_${randomBytes(32).toString('base64url')}`],
    ["a real key's id with a guessed secret", () => `osk_${w.fab.keyId.replaceAll('-', '')}_${randomBytes(32).toString('base64url')}`],
    ['revoked', () => revokedKey],
    ['a real key cut short by one character', () => (w.fab.api as any).credentials.apiKey.slice(0, -1)],
    ['a real key in upper case', () => (w.fab.api as any).credentials.apiKey.toUpperCase()],
    ['a real key with a NUL-free suffix', () => `${(w.fab.api as any).credentials.apiKey}x`],
    ['junk', () => "'; select * from api_keys; --"],
  ];

  it.each(KEYS)('API key %s: 401 on REST, CSV, SSE and the socket handshake', async (_what, make) => {
    const doors = await knock(t, { apiKey: make() }, { rest: `/v1/orders/${order.id}`, topic: `factory:${w.fab.id}` });
    expect(statuses(doors), JSON.stringify(doors)).toEqual(REFUSED);
  });

  it('a genuine but invalid API key next to a genuine token is refused: no fallback to the other credential', async () => {
    const token = await sign(ops(), 'HS256', secret);
    const r = await fetch(`${t.baseUrl}/v1/orders`, { headers: { authorization: `Bearer ${token}`, 'x-api-key': revokedKey } });
    expect(r.status).toBe(401);
    const sock = await handshake(t, { token, apiKey: revokedKey } as never, 'all');
    expect(sock.status).toBe(401);
  });

  // The CSV export is for ops: a customer or a factory gets 403 whatever it asks for.
  it("a genuine customer token pointing at another customer's order: 404 on REST, SSE and the socket; the export is ops only", async () => {
    const b = await knock(t, { token: (w.customerB.api as any).credentials.token }, { rest: `/v1/orders/${order.id}`, topic: `order:${order.id}` });
    expect(statuses(b)).toEqual({ rest: 404, csv: 403, sse: 404, socket: 404 });
    const other = await knock(t, { token: (w.customerB.api as any).credentials.token }, { rest: `/v1/customers/${w.customerA.id}`, topic: `customer:${w.customerA.id}` });
    expect([other.rest.status, other.sse.status, other.socket.status]).toEqual([404, 404, 404]);
    // the owner sees it everywhere (control)
    const a = await knock(t, { token: (w.customerA.api as any).credentials.token }, { rest: `/v1/orders/${order.id}`, topic: `order:${order.id}` });
    expect(statuses(a)).toEqual({ rest: 200, csv: 403, sse: 200, socket: 200 });
  });

  it("a genuine key of another factory: 404 on an order not routed to it, 403 on the factory's topic and the export", async () => {
    const d = await knock(t, { apiKey: offRouteKey }, { rest: `/v1/orders/${order.id}`, topic: `factory:${w.fab.id}` });
    expect(statuses(d)).toEqual({ rest: 404, csv: 403, sse: 403, socket: 403 });
    expect((await knock(t, { apiKey: offRouteKey }, { rest: '/v1/orders', topic: `order:${order.id}` })).sse.status).toBe(404);
  });
});

describe('hostile credentials on a service verifying RS256 (JWT_PUBLIC_KEY)', () => {
  let t: TestApp;
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const attacker = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  beforeAll(async () => {
    t = await startTestApp({ JWT_SECRET: '', JWT_PUBLIC_KEY: pem, RATE_LIMIT_ANONYMOUS_PER_MINUTE: '100000' });
  });
  afterAll(() => t?.close());

  it('a token signed with the private key opens every door (control)', async () => {
    expect(statuses(await knock(t, { token: await sign(ops(), 'RS256', privateKey) }))).toEqual({ rest: 200, csv: 200, sse: 200, socket: 200 });
  });

  const JWTS: Array<[string, () => Promise<string> | string]> = [
    ['HS256 with the public key (PEM text) as the HMAC secret: algorithm confusion', () => sign(ops(), 'HS256', new TextEncoder().encode(pem))],
    ['HS256 with the DER of the public key as the secret', () => sign(ops(), 'HS256', publicKey.export({ type: 'spki', format: 'der' }))],
    ['RS256 signed by another key', () => sign(ops(), 'RS256', attacker.privateKey)],
    ['RS256 by another key that carries its own public key in the header (jwk)', async () =>
      sign(ops(), 'RS256', attacker.privateKey, { jwk: await exportJWK(attacker.publicKey) })],
    ['PS256 with the right private key (the algorithm is pinned)', () => sign(ops(), 'PS256', privateKey)],
    ['alg none', () => `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(ops())}.`],
    ['RS256 with the right key but expired', () => sign(ops({ exp: now() - 5 }), 'RS256', privateKey)],
    ['RS256 with the right key, not yet valid (nbf)', () => sign(ops({ nbf: now() + 600 }), 'RS256', privateKey)],
  ];

  it.each(JWTS)('%s: 401 on REST, CSV, SSE and the socket handshake', async (_what, make) => {
    const doors = await knock(t, { token: await make() });
    expect(statuses(doors), JSON.stringify(doors)).toEqual(REFUSED);
  });
});
