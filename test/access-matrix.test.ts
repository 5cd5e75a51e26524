/**
 * The access matrix of the REST API: every route against every kind of caller, with the status
 * the contract (/work/shared/API.md) promises. It doubles as documentation: read the table in
 * `ROWS` to learn who may do what. One test per cell, named `<route> | <caller> -> <status>`.
 *
 * The rules it encodes:
 * - no credentials, or credentials that do not verify (revoked or forged key, expired token,
 *   another secret, `alg: none`, garbage): 401 on every /v1 route;
 * - a role that may not use a route: 403, whatever the resource;
 * - a resource the caller may not know exists (another customer's order or customer, an order not
 *   routed to the factory): 404, the same as one that does not exist;
 * - admin is ops plus the management of customers, engineers, factories and keys; ops reads
 *   everything and creates orders, but manages nothing;
 * - health, readiness, metrics and the OpenAPI document: 200 for anyone.
 * Every refusal is `application/problem+json` whose `status` is the HTTP status.
 *
 * Each cell that changes something works on its own fresh rows (a new customer name, a new key,
 * a new order), so the cells do not depend on each other or on their order.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT } from 'jose';
import { mintToken } from '../src/auth/jwt.js';
import { JWT_SECRET, startTestApp, type TestApp } from './helpers/app.js';
import type { ApiClient, Credentials, Reply } from './helpers/http.js';
import { createWorld, standardRoute, type World } from './helpers/world.js';

// ---------------------------------------------------------------------------------------------
// Callers
// ---------------------------------------------------------------------------------------------

/** Callers whose credentials verify, in the column order of the matrix. */
const VALID = ['admin', 'ops', 'customerA', 'customerB', 'fab', 'offRoute'] as const;
type Valid = (typeof VALID)[number];

/** Callers refused on every /v1 route with 401. */
const REFUSED = [
  'anonymous', // no credentials at all
  'revokedKey', // a key of fab, revoked by an admin
  'expiredJwt', // an ops token that expired 10 s ago
  'otherSecretJwt', // an admin token signed with another HS256 secret
  'algNoneJwt', // an admin token with alg: none and no signature
  'hs512Jwt', // an admin token signed with the right secret but HS512: the algorithm is pinned
  'noExpJwt', // an admin token signed with the right secret but without exp (required)
  'factoryRoleJwt', // a token claiming role factory, which people's tokens cannot have
  'customerJwtWithoutCustomerId', // role customer without the customerId claim
  'garbageBearer', // Authorization: Bearer abc
  'garbageKey', // X-API-Key: not-a-key
  'unknownKey', // a well-formed key that was never issued
  'forgedKey', // the id of fab's key with another secret
] as const;
type Refused = (typeof REFUSED)[number];
type Caller = Valid | Refused;
const CALLERS: Caller[] = [...VALID, ...REFUSED];

// ---------------------------------------------------------------------------------------------
// The world the matrix runs in
// ---------------------------------------------------------------------------------------------

let t: TestApp;
let w: World;
/** A factory that is on no order's route, with its key. */
let off: { id: string; keyId: string; api: ApiClient };
/** An order of customer A, routed through fab, assembly and logistics. */
let orderA: any;
/** An order of customer B, routed through logistics only. */
let orderB: any;
const creds = {} as Record<Caller, Credentials>;
const clients = {} as Record<Caller, ApiClient>;

const uniq = () => randomUUID().slice(0, 8);
const b64url = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
const nowSeconds = () => Math.floor(Date.now() / 1000);

beforeAll(async () => {
  // Every refused caller counts against the one anonymous bucket of 127.0.0.1: the matrix alone
  // sends a few hundred such requests, more than the default 300 a minute.
  t = await startTestApp({ RATE_LIMIT_ANONYMOUS_PER_MINUTE: '100000' });
  w = await createWorld(t);

  const f = await w.admin.post('/v1/factories', { name: `Off-route Testing ${uniq()}`, kind: 'testing', country: 'TW' });
  expect(f.status, f.text).toBe(201);
  const k = await w.admin.post(`/v1/factories/${f.body.id}/api-keys`, { label: 'off-route' });
  expect(k.status, k.text).toBe(201);
  off = { id: f.body.id, keyId: k.body.id, api: t.api.as({ apiKey: k.body.key }) };

  orderA = await w.createOrder();
  const b = await w.ops.post('/v1/orders', {
    customerId: w.customerB.id,
    product: 'Stencil 300x300mm',
    quantity: 1,
    promisedAt: new Date(Date.now() + 3 * 86400_000).toISOString(),
    route: [{ stage: 'shipping', factoryId: w.logistics.id, plannedHours: 24 }],
  });
  expect(b.status, b.text).toBe(201);
  orderB = b.body;

  // A key of fab, revoked before it is used.
  const revoked = await w.admin.post(`/v1/factories/${w.fab.id}/api-keys`, { label: 'to revoke' });
  expect(revoked.status, revoked.text).toBe(201);
  expect((await t.api.as({ apiKey: revoked.body.key }).get(`/v1/orders/${orderA.id}`)).status).toBe(200);
  const del = await w.admin.delete(`/v1/api-keys/${revoked.body.id}`);
  expect(del.status, del.text).toBe(204);

  const adminClaims = { sub: 'mallory', role: 'admin', iat: nowSeconds(), exp: nowSeconds() + 3600 };
  Object.assign(creds, {
    admin: { token: await t.token({ role: 'admin' }) },
    ops: { token: await t.token({ role: 'ops' }) },
    customerA: { token: await t.token({ role: 'customer', customerId: w.customerA.id }) },
    customerB: { token: await t.token({ role: 'customer', customerId: w.customerB.id }) },
    fab: { apiKey: await keyOf(w.fab.id) },
    offRoute: { apiKey: await keyOf(off.id) },
    anonymous: {},
    revokedKey: { apiKey: revoked.body.key },
    expiredJwt: { token: await t.token({ role: 'ops' }, -10) },
    otherSecretJwt: { token: await mintToken(randomBytes(32).toString('hex'), { sub: 'mallory', role: 'admin' }) },
    algNoneJwt: { token: `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(adminClaims)}.` },
    hs512Jwt: { token: await sign({ role: 'admin' }, 'HS512', true) },
    noExpJwt: { token: await sign({ role: 'admin' }, 'HS256', false) },
    factoryRoleJwt: { token: await sign({ role: 'factory', factoryId: w.fab.id }, 'HS256', true) },
    customerJwtWithoutCustomerId: { token: await t.token({ role: 'customer' }) },
    garbageBearer: { token: 'abc' },
    garbageKey: { apiKey: 'not-a-key' },
    unknownKey: { apiKey: `osk_${randomUUID().replaceAll('-', '')}_${randomBytes(32).toString('base64url')}` },
    forgedKey: { apiKey: `osk_${w.fab.keyId.replaceAll('-', '')}_${randomBytes(32).toString('base64url')}` },
  } satisfies Record<Caller, Credentials>);
  for (const c of CALLERS) clients[c] = t.api.as(creds[c]);
});
afterAll(() => t?.close());

/** A token signed with the service's own secret, with the given claims, algorithm and (or no) exp. */
function sign(claims: Record<string, unknown>, alg: 'HS256' | 'HS512', withExp: boolean): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg, typ: 'JWT' }).setSubject('mallory').setIssuedAt();
  if (withExp) jwt.setExpirationTime(nowSeconds() + 3600);
  return jwt.sign(new TextEncoder().encode(JWT_SECRET));
}

/** A fresh key of a factory (the world's clients hide theirs). */
async function keyOf(factoryId: string): Promise<string> {
  const r = await w.admin.post(`/v1/factories/${factoryId}/api-keys`, { label: `matrix ${uniq()}` });
  expect(r.status, r.text).toBe(201);
  return r.body.key;
}

/** A fresh order of customer A on the standard route (fab, assembly, logistics), made by ops. */
const freshOrder = async (): Promise<string> => (await w.createOrder()).id;

const orderBody = (customerId = w.customerA.id) => ({
  customerId,
  externalRef: `MATRIX-${uniq()}`,
  product: '2-layer FR4 50x50mm',
  quantity: 10,
  promisedAt: new Date(Date.now() + 10 * 86400_000).toISOString(),
  route: standardRoute(w),
});

/** Opens a server-sent event stream, reads the status line and headers, and closes it. */
async function openStream(caller: Caller, path: string): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (creds[caller].token) headers.authorization = `Bearer ${creds[caller].token}`;
  if (creds[caller].apiKey) headers['x-api-key'] = creds[caller].apiKey!;
  const abort = new AbortController();
  const res = await fetch(t.baseUrl + path, { headers, signal: abort.signal });
  let text: string;
  let body: any;
  if (res.status === 200) {
    // The stream never ends on its own: read its first chunk (`retry: …`), then hang up.
    const reader = res.body!.getReader();
    const first = await reader.read();
    text = new TextDecoder().decode(first.value);
    abort.abort();
    await reader.cancel().catch(() => undefined);
  } else {
    text = await res.text();
    body = (res.headers.get('content-type') ?? '').includes('json') && text ? JSON.parse(text) : text;
  }
  return { status: res.status, headers: res.headers, body, text };
}

// ---------------------------------------------------------------------------------------------
// The matrix
// ---------------------------------------------------------------------------------------------

/** Expected statuses of the valid callers: [admin, ops, customerA, customerB, fab, offRoute]. */
type Statuses = [admin: number, ops: number, customerA: number, customerB: number, fab: number, offRoute: number];

interface Row {
  route: string;
  /** Statuses of the valid callers; every refused caller gets 401. Absent: public route, 200 for all. */
  expect?: Statuses;
  send(api: ApiClient, caller: Caller): Promise<Reply>;
  /** Further checks, run after the status matched (success or refusal). */
  then?(r: Reply, caller: Caller): Promise<void> | void;
}

const ids = (r: Reply): string[] => r.body.items.map((o: any) => o.id);

/** After a refused POST of an event, the order must be unchanged: only its `created` event. */
async function unchanged(orderId: string) {
  const o = await w.ops.get(`/v1/orders/${orderId}`);
  expect(o.status, o.text).toBe(200);
  expect(o.body.lastSeq, 'a refused event must not be appended').toBe(1);
}

function eventRow(route: string, event: () => Record<string, unknown>, statuses: Statuses): Row {
  let orderId = '';
  return {
    route,
    expect: statuses,
    async send(api) {
      orderId = await freshOrder();
      return api.post(`/v1/orders/${orderId}/events`, event());
    },
    async then(r, caller) {
      if (r.status !== 201) return unchanged(orderId);
      expect(r.body.orderId).toBe(orderId);
      expect(r.body.seq).toBe(2);
      expect(r.body.type).toBe(event().type);
      const actor = caller === 'fab' ? `factory:${w.fab.id}` : caller === 'ops' ? 'ops:ops-test' : 'admin:admin-test';
      expect(r.body.actor).toBe(actor);
    },
  };
}

//                                                   admin ops  custA custB fab  offRoute
const ROWS: Row[] = [
  // ----- customers --------------------------------------------------------------------------
  {
    route: 'POST /v1/customers',
    expect: [201, 403, 403, 403, 403, 403],
    send: (api) => api.post('/v1/customers', { name: `Matrix Customer ${uniq()}`, country: 'NL' }),
    then(r) {
      if (r.status === 201) expect(r.body).toMatchObject({ id: expect.any(String), country: 'NL' });
    },
  },
  {
    route: 'GET /v1/customers',
    expect: [200, 200, 403, 403, 403, 403],
    send: (api) => api.get('/v1/customers?limit=200'),
    then(r) {
      if (r.status === 200) expect(ids(r)).toEqual(expect.arrayContaining([w.customerA.id, w.customerB.id]));
    },
  },
  {
    route: "GET /v1/customers/:id (A's id)",
    expect: [200, 200, 200, 404, 403, 403],
    send: (api) => api.get(`/v1/customers/${w.customerA.id}`),
    then(r) {
      if (r.status === 200) expect(r.body.id).toBe(w.customerA.id);
    },
  },
  {
    route: "GET /v1/customers/:id (B's id)",
    expect: [200, 200, 404, 200, 403, 403],
    send: (api) => api.get(`/v1/customers/${w.customerB.id}`),
    then(r) {
      if (r.status === 200) expect(r.body.id).toBe(w.customerB.id);
    },
  },
  {
    route: 'GET /v1/customers/:id (unknown id)',
    expect: [404, 404, 404, 404, 403, 403],
    send: (api) => api.get(`/v1/customers/${randomUUID()}`),
  },
  {
    route: "POST /v1/customers/:id/engineers (A's id)",
    expect: [201, 403, 403, 403, 403, 403],
    send: (api) =>
      api.post(`/v1/customers/${w.customerA.id}/engineers`, { name: 'Grace', email: `grace-${uniq()}@acme.example` }),
    then(r) {
      if (r.status === 201) expect(r.body.customerId).toBe(w.customerA.id);
    },
  },
  {
    route: "GET /v1/customers/:id/engineers (A's id)",
    expect: [200, 200, 200, 404, 403, 403],
    send: (api) => api.get(`/v1/customers/${w.customerA.id}/engineers`),
    then(r) {
      if (r.status === 200) expect(ids(r)).toContain(w.customerA.engineerId);
    },
  },

  // ----- factories and keys -------------------------------------------------------------------
  {
    route: 'POST /v1/factories',
    expect: [201, 403, 403, 403, 403, 403],
    send: (api) => api.post('/v1/factories', { name: `Matrix Factory ${uniq()}`, kind: 'components', country: 'VN' }),
    then(r) {
      if (r.status === 201) expect(r.body).toMatchObject({ kind: 'components', timezone: 'UTC' });
    },
  },
  {
    route: 'GET /v1/factories',
    expect: [200, 200, 403, 403, 403, 403],
    send: (api) => api.get('/v1/factories?limit=200'),
    then(r) {
      if (r.status === 200) expect(ids(r)).toEqual(expect.arrayContaining([w.fab.id, w.assembly.id, w.logistics.id, off.id]));
    },
  },
  {
    // The service lets a factory read its own record (its OpenAPI summary says so); see the report.
    route: "GET /v1/factories/:id (fab's id)",
    expect: [200, 200, 403, 403, 200, 403],
    send: (api) => api.get(`/v1/factories/${w.fab.id}`),
    then(r) {
      if (r.status === 200) expect(r.body.id).toBe(w.fab.id);
    },
  },
  {
    route: "GET /v1/factories/:id (assembly's id)",
    expect: [200, 200, 403, 403, 403, 403],
    send: (api) => api.get(`/v1/factories/${w.assembly.id}`),
  },
  {
    route: "POST /v1/factories/:id/api-keys (off-route factory's id)",
    expect: [201, 403, 403, 403, 403, 403],
    send: (api) => api.post(`/v1/factories/${off.id}/api-keys`, { label: `matrix ${uniq()}` }),
    async then(r) {
      if (r.status !== 201) return;
      expect(r.body).toMatchObject({ factoryId: off.id, revokedAt: null, key: expect.stringMatching(/^osk_/) });
      // The key works at once, as that factory.
      const me = await t.api.as({ apiKey: r.body.key }).get(`/v1/factories/${off.id}`);
      expect(me.status, me.text).toBe(200);
    },
  },
  {
    route: "GET /v1/factories/:id/api-keys (fab's id)",
    expect: [200, 403, 403, 403, 403, 403],
    send: (api) => api.get(`/v1/factories/${w.fab.id}/api-keys`),
    then(r) {
      if (r.status !== 200) return;
      expect(ids(r)).toContain(w.fab.keyId);
      // Never the key itself, nor its hash.
      for (const k of r.body.items) expect(Object.keys(k).sort()).toEqual(['createdAt', 'factoryId', 'id', 'label', 'revokedAt']);
    },
  },
  (() => {
    // Each cell revokes a fresh key of the off-route factory; a refused DELETE must leave it working.
    let victim = { id: '', key: '' };
    return {
      route: 'DELETE /v1/api-keys/:id (a fresh key)',
      expect: [204, 403, 403, 403, 403, 403],
      async send(api) {
        const k = await w.admin.post(`/v1/factories/${off.id}/api-keys`, { label: `victim ${uniq()}` });
        expect(k.status, k.text).toBe(201);
        victim = { id: k.body.id, key: k.body.key };
        return api.delete(`/v1/api-keys/${victim.id}`);
      },
      async then(r) {
        const after = await t.api.as({ apiKey: victim.key }).get(`/v1/factories/${off.id}`);
        expect(after.status, `the key after a ${r.status} DELETE: ${after.text}`).toBe(r.status === 204 ? 401 : 200);
      },
    } satisfies Row;
  })(),
  {
    route: 'DELETE /v1/api-keys/:id (unknown id)',
    expect: [404, 403, 403, 403, 403, 403],
    send: (api) => api.delete(`/v1/api-keys/${randomUUID()}`),
  },

  // ----- orders -------------------------------------------------------------------------------
  {
    route: 'POST /v1/orders (for customer A)',
    expect: [201, 201, 403, 403, 403, 403],
    send: (api) => api.post('/v1/orders', orderBody()),
    then(r) {
      if (r.status === 201) expect(r.body).toMatchObject({ customerId: w.customerA.id, status: 'open', lastSeq: 1 });
    },
  },
  {
    // A customer may not create orders, not even its own: its portal's backend goes through ops.
    route: 'POST /v1/orders (for customer B)',
    expect: [201, 201, 403, 403, 403, 403],
    send: (api) => api.post('/v1/orders', orderBody(w.customerB.id)),
  },
  {
    route: "GET /v1/orders/:id (A's order via fab, assembly, logistics)",
    expect: [200, 200, 200, 404, 200, 404],
    send: (api) => api.get(`/v1/orders/${orderA.id}`),
    then(r) {
      if (r.status === 200) expect(r.body).toMatchObject({ id: orderA.id, customerId: w.customerA.id });
    },
  },
  {
    route: "GET /v1/orders/:id (B's order via logistics only)",
    expect: [200, 200, 404, 200, 404, 404],
    send: (api) => api.get(`/v1/orders/${orderB.id}`),
    then(r) {
      if (r.status === 200) expect(r.body.id).toBe(orderB.id);
    },
  },
  {
    route: 'GET /v1/orders/:id (unknown id)',
    expect: [404, 404, 404, 404, 404, 404],
    send: (api) => api.get(`/v1/orders/${randomUUID()}`),
  },
  {
    // Everyone may list; what each sees is the point.
    route: 'GET /v1/orders',
    expect: [200, 200, 200, 200, 200, 200],
    send: (api) => api.get('/v1/orders?limit=200'),
    then(r, caller) {
      if (r.status !== 200) return;
      const seen = ids(r);
      const items: any[] = r.body.items;
      switch (caller) {
        case 'admin':
        case 'ops':
          expect(seen).toEqual(expect.arrayContaining([orderA.id, orderB.id]));
          break;
        case 'customerA':
          expect(seen).toContain(orderA.id);
          expect(seen).not.toContain(orderB.id);
          expect(
            items.every((o) => o.customerId === w.customerA.id),
            'customer A sees only its orders',
          ).toBe(true);
          break;
        case 'customerB':
          expect(seen).toContain(orderB.id);
          expect(seen).not.toContain(orderA.id);
          expect(
            items.every((o) => o.customerId === w.customerB.id),
            'customer B sees none of A',
          ).toBe(true);
          break;
        case 'fab':
          expect(seen).toContain(orderA.id);
          expect(seen).not.toContain(orderB.id);
          expect(
            items.every((o) => o.route.some((s: any) => s.factoryId === w.fab.id)),
            'fab sees only orders routed to it',
          ).toBe(true);
          break;
        case 'offRoute':
          expect(seen, 'a factory on no route sees no order').toEqual([]);
          break;
      }
    },
  },
  {
    // Asking for another customer's orders by filter does not widen what a customer sees.
    route: "GET /v1/orders?customerId=<A's id>",
    expect: [200, 200, 200, 200, 200, 200],
    send: (api) => api.get(`/v1/orders?limit=200&customerId=${w.customerA.id}`),
    then(r, caller) {
      if (r.status !== 200) return;
      const seen = ids(r);
      if (caller === 'customerB' || caller === 'offRoute') expect(seen).toEqual([]);
      else expect(seen).toContain(orderA.id);
      expect(seen).not.toContain(orderB.id);
    },
  },
  {
    route: 'GET /v1/orders.csv',
    expect: [200, 200, 403, 403, 403, 403],
    send: (api) => api.get('/v1/orders.csv'),
    then(r) {
      if (r.status !== 200) return;
      expect(r.headers.get('content-type')).toMatch(/^text\/csv/);
      expect(r.text.split('\n')[0]).toMatch(/^id,/);
      expect(r.text).toContain(orderA.id);
      expect(r.text).toContain(orderB.id);
    },
  },

  // ----- events -------------------------------------------------------------------------------
  {
    route: "GET /v1/orders/:id/events (A's order)",
    expect: [200, 200, 200, 404, 200, 404],
    send: (api) => api.get(`/v1/orders/${orderA.id}/events`),
    then(r) {
      if (r.status === 200) expect(r.body.items[0]).toMatchObject({ orderId: orderA.id, seq: 1, type: 'created' });
    },
  },
  {
    route: 'GET /v1/orders/:id/events (unknown id)',
    expect: [404, 404, 404, 404, 404, 404],
    send: (api) => api.get(`/v1/orders/${randomUUID()}/events`),
  },
  // Customers never post events (403, whatever the order); a factory not on the route does not
  // know the order (404); a factory posts only for its own stages (403 for another's).
  eventRow(
    'POST /v1/orders/:id/events (stage_started of review, a fab stage)',
    () => ({ type: 'stage_started', stage: 'review' }),
    [201, 201, 403, 403, 201, 404],
  ),
  eventRow(
    'POST /v1/orders/:id/events (stage_progress of review, a fab stage)',
    () => ({ type: 'stage_progress', stage: 'review', progress: 10 }),
    [201, 201, 403, 403, 201, 404],
  ),
  eventRow(
    'POST /v1/orders/:id/events (stage_started of components, an assembly stage)',
    () => ({ type: 'stage_started', stage: 'components' }),
    [201, 201, 403, 403, 403, 404],
  ),
  eventRow(
    'POST /v1/orders/:id/events (note on smt, an assembly stage)',
    () => ({ type: 'note', stage: 'smt', text: 'matrix' }),
    [201, 201, 403, 403, 403, 404],
  ),
  eventRow(
    'POST /v1/orders/:id/events (note without stage)',
    () => ({ type: 'note', text: 'matrix' }),
    [201, 201, 403, 403, 201, 404],
  ),
  // hold is an ops event: no factory may post it, on any order, so the refusal (403) tells nothing.
  eventRow(
    'POST /v1/orders/:id/events (hold, an ops event)',
    () => ({ type: 'hold', cause: 'material', reason: 'matrix' }),
    [201, 201, 403, 403, 403, 403],
  ),
  {
    route: 'POST /v1/orders/:id/events (unknown order)',
    expect: [404, 404, 403, 403, 404, 404],
    send: (api) => api.post(`/v1/orders/${randomUUID()}/events`, { type: 'note', text: 'matrix' }),
  },
  (() => {
    // Two items on a fresh order of A: a note on review (fab's stage) and a note on smt (assembly's).
    const items: Record<Valid, [number, number]> = {
      admin: [201, 201],
      ops: [201, 201],
      customerA: [0, 0], // the whole batch is refused
      customerB: [0, 0],
      fab: [201, 403],
      offRoute: [404, 404],
    };
    let orderId = '';
    return {
      route: "POST /v1/events/batch (notes on review and smt of A's fresh order)",
      expect: [200, 200, 403, 403, 200, 200],
      async send(api) {
        orderId = await freshOrder();
        return api.post('/v1/events/batch', {
          events: [
            { orderId, idempotencyKey: `matrix-${uniq()}`, type: 'note', stage: 'review', text: 'matrix' },
            { orderId, idempotencyKey: `matrix-${uniq()}`, type: 'note', stage: 'smt', text: 'matrix' },
          ],
        });
      },
      async then(r, caller) {
        if (r.status !== 200) return unchanged(orderId);
        const results: any[] = r.body.results;
        expect(results.map((x) => x.status)).toEqual(items[caller as Valid]);
        for (const x of results) {
          if (x.status >= 400) expect(x.error).toMatchObject({ status: x.status });
          else expect(x.event).toMatchObject({ orderId, type: 'note' });
        }
      },
    } satisfies Row;
  })(),

  // ----- ops views ----------------------------------------------------------------------------
  {
    route: 'GET /v1/ops/summary',
    expect: [200, 200, 403, 403, 403, 403],
    send: (api) => api.get('/v1/ops/summary?window=7d'),
  },
  {
    route: "GET /v1/ops/factories/:id/performance (fab's id)",
    expect: [200, 200, 403, 403, 403, 403],
    send: (api) => api.get(`/v1/ops/factories/${w.fab.id}/performance?window=7d`),
  },

  // ----- streams over HTTP: the same rules per topic ------------------------------------------
  {
    route: "GET /v1/feed?topic=order:<A's order>",
    expect: [200, 200, 200, 404, 200, 404],
    send: (api) => api.get(`/v1/feed?topic=order:${orderA.id}`),
    then(r) {
      if (r.status === 200) expect(r.body.items.map((e: any) => e.orderId)).toContain(orderA.id);
    },
  },
  {
    route: "GET /v1/feed?topic=customer:<A's id>",
    expect: [200, 200, 200, 404, 403, 403],
    send: (api) => api.get(`/v1/feed?topic=customer:${w.customerA.id}`),
  },
  {
    route: "GET /v1/feed?topic=factory:<fab's id>",
    expect: [200, 200, 403, 403, 200, 403],
    send: (api) => api.get(`/v1/feed?topic=factory:${w.fab.id}`),
  },
  {
    route: 'GET /v1/feed?topic=all',
    expect: [200, 200, 403, 403, 403, 403],
    send: (api) => api.get('/v1/feed?topic=all'),
  },
  {
    route: "GET /v1/stream?topic=order:<A's order> (SSE)",
    expect: [200, 200, 200, 404, 200, 404],
    send: (_api, caller) => openStream(caller, `/v1/stream?topic=order:${orderA.id}`),
    then(r) {
      if (r.status === 200) expect(r.headers.get('content-type')).toMatch(/^text\/event-stream/);
    },
  },

  // ----- public -------------------------------------------------------------------------------
  { route: 'GET /healthz', send: (api) => api.get('/healthz') },
  {
    route: 'GET /readyz',
    send: (api) => api.get('/readyz'),
    then: (r) => expect(r.body.status).toBe('ready'),
  },
  {
    route: 'GET /openapi.json',
    send: (api) => api.get('/openapi.json'),
    then: (r) => expect(r.body.openapi).toBe('3.1.0'),
  },
  { route: 'GET /metrics', send: (api) => api.get('/metrics') },
];

interface Cell {
  row: Row;
  route: string;
  caller: Caller;
  status: number;
}

const expected = (row: Row, caller: Caller): number => {
  if (!row.expect) return 200;
  const i = VALID.indexOf(caller as Valid);
  return i >= 0 ? row.expect[i]! : 401;
};
const CELLS: Cell[] = ROWS.flatMap((row) =>
  CALLERS.map((caller) => ({ row, route: row.route, caller, status: expected(row, caller) })),
);

describe('access matrix', () => {
  it('covers every route row against every caller', () => {
    expect(new Set(ROWS.map((r) => r.route)).size).toBe(ROWS.length);
    expect(CELLS.length).toBe(ROWS.length * CALLERS.length);
  });

  it('forges its bad tokens from good ones: each is refused for its one defect only', async () => {
    // The same claims, secret and algorithm, with nothing wrong, are accepted.
    expect((await t.api.as(await sign({ role: 'admin' }, 'HS256', true)).get('/v1/customers')).status).toBe(200);
    const [header, payload] = creds.algNoneJwt.token!.split('.');
    expect(JSON.parse(Buffer.from(header!, 'base64url').toString())).toEqual({ alg: 'none', typ: 'JWT' });
    const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString());
    expect((await t.api.as(await sign(claims, 'HS256', true)).get('/v1/customers')).status).toBe(200);
  });

  it.each(CELLS)('$route | $caller -> $status', async ({ row, caller, status }) => {
    const r = await row.send(clients[caller], caller);
    expect(r.status, r.text).toBe(status);
    if (status >= 400) {
      expect(r.headers.get('content-type'), r.text).toMatch(/^application\/problem\+json/);
      expect(r.body.status, r.text).toBe(status);
      expect(r.body.type, r.text).toEqual(expect.any(String));
      expect(r.body.title, r.text).toEqual(expect.any(String));
    }
    await row.then?.(r, caller);
  });
});
