import { randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { eventSchema } from '../src/events/schemas.js';
import { problemSchema } from '../src/http/schemas.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import type { Reply } from './helpers/http.js';
import { createWorld, standardRoute, type World } from './helpers/world.js';

// Bad input of every kind: each is answered 4xx with application/problem+json, names the field
// when it is a validation error, and leaves the database exactly as it was. No answer in this
// file is ever a 5xx (every response is recorded and checked at the end).

// ---------------------------------------------------------------------------------------------
// Every HTTP answer of the file, to prove at the end that none was a 5xx.
const answered: Array<{ method: string; url: string; status: number }> = [];
const realFetch = globalThis.fetch;
globalThis.fetch = (async (input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) => {
  const res = await realFetch(input, init);
  answered.push({ method: init?.method ?? 'GET', url: String(input), status: res.status });
  return res;
}) as typeof fetch;

let t: TestApp;
let w: World;
/** An order of customer A on the standard route, untouched by the refused requests. */
let o: any;
beforeAll(async () => {
  t = await startTestApp();
  w = await createWorld(t);
  o = await w.createOrder();
});
afterAll(async () => {
  await t?.close();
});

// ---------------------------------------------------------------------------------------------
// Helpers

const TABLES = ['customers', 'engineers', 'factories', 'api_keys', 'orders', 'order_steps', 'events', 'idempotency_keys'] as const;

/** Row counts of every table and each order's seq, status and update time. */
async function snapshot(db: Kysely<any>) {
  const counts: Record<string, number> = {};
  for (const table of TABLES) {
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from ${sql.table(table)}`.execute(db);
    counts[table] = rows[0]!.n;
  }
  const { rows: orders } = await sql<{ id: string; last_seq: number; status: string; updated_at: Date }>`
    select id, last_seq, status, updated_at from orders order by id`.execute(db);
  return { counts, orders: orders.map((r) => ({ ...r, updated_at: new Date(r.updated_at).toISOString() })) };
}

/**
 * True when some field error's path names `path`, exactly or a part of it (`query.status[1]` names
 * `query.status`). An unknown field is named by its own path (`body.priority`), not its parent's.
 */
function names(errors: Array<{ path: string; message: string }> | undefined, path: string): boolean {
  if (!Array.isArray(errors)) return false;
  return errors.some((e) => e.path === path || e.path.startsWith(`${path}.`) || e.path.startsWith(`${path}[`));
}

/** The reply is a problem document of one of `status`, naming every path of `paths`. */
function expectProblem(r: Reply, status: number | number[], paths: string[] = [], slug?: string) {
  const statuses = [status].flat();
  expect(r.status, `expected ${statuses.join(' or ')}, got ${r.status}: ${r.text}`).toBeLessThan(500);
  expect(statuses, `expected ${statuses.join(' or ')}, got ${r.status}: ${r.text}`).toContain(r.status);
  expect(r.headers.get('content-type') ?? '', r.text).toMatch(/^application\/problem\+json/);
  expectProblemBody(r.body, r.status);
  if (slug) expect(r.body.type).toMatch(new RegExp(`/${slug}$`));
  for (const path of paths) {
    expect(names(r.body.errors, path), `errors[].path should name ${path}: ${JSON.stringify(r.body.errors)}`).toBe(true);
  }
}

function expectProblemBody(body: any, status: number) {
  expect(body).toMatchObject({ type: expect.any(String), title: expect.any(String), status });
  expect(typeof body.detail === 'string' && body.detail.length > 0, `detail: ${JSON.stringify(body)}`).toBe(true);
  if (body.errors !== undefined) {
    expect(Array.isArray(body.errors)).toBe(true);
    for (const e of body.errors) expect(e).toMatchObject({ path: expect.any(String), message: expect.any(String) });
  }
}

const inAWeek = () => new Date(Date.now() + 7 * 86400_000).toISOString();

/** A valid create-order body for customer A; `over` replaces fields. */
const orderBody = (over: Record<string, unknown> = {}) => ({
  customerId: w.customerA.id,
  engineerId: w.customerA.engineerId,
  product: '4-layer FR4 100x80mm',
  quantity: 50,
  promisedAt: inAWeek(),
  route: standardRoute(w),
  ...over,
});

/** The standard route with step `i` changed. */
const routeWith = (i: number, change: Record<string, unknown>) =>
  standardRoute(w).map((s, j) => (j === i ? { ...s, ...change } : s));

/** A valid order body as JSON text with `prefix` spliced in as its first members. */
const orderJsonWith = (prefix: string) => `{${prefix},${JSON.stringify(orderBody()).slice(1)}`;

const json = { 'content-type': 'application/json' };
const postOrder = (body: unknown, headers?: Record<string, string>) => w.ops.post('/v1/orders', body, headers);
const postOrderRaw = (raw: string | Uint8Array, headers: Record<string, string> = json) =>
  w.ops.request('POST', '/v1/orders', { raw, headers });
const postEvent = (body: unknown, headers?: Record<string, string>) => w.ops.post(`/v1/orders/${o.id}/events`, body, headers);
// A batch's answer is written without a response check (events/routes.ts): hold every one to the
// schema here, with no field more or less than it documents.
const batchAnswer = z.strictObject({
  results: z.array(
    z.strictObject({
      status: z.number().int(),
      event: z.strictObject(eventSchema.shape).optional(),
      error: z.strictObject({ ...problemSchema.shape, errors: z.array(z.strictObject({ path: z.string(), message: z.string() })).optional() }).optional(),
    }),
  ),
});
const postBatch = async (body: unknown) => {
  const r = await w.ops.post('/v1/events/batch', body);
  if (r.status === 200) expect(batchAnswer.safeParse(r.body).error?.issues, r.text).toBeUndefined();
  return r;
};
const listOrders = (query: string) => w.ops.get(`/v1/orders?${query}`);

interface BadCase {
  name: string;
  send: () => Promise<Reply>;
  status: number | number[];
  /** Field paths the problem's errors[] must name. */
  paths?: string[];
  /** The problem type's slug. */
  slug?: string;
  /** Extra checks after the request. */
  then?: (r: Reply) => void;
}

/** Sends the case, checks its problem, and that the database did not change. */
async function runCase(c: BadCase) {
  const before = await snapshot(t.database.db);
  const r = await c.send();
  expectProblem(r, c.status, c.paths, c.slug);
  c.then?.(r);
  expect(await snapshot(t.database.db), 'the database changed').toEqual(before);
}

// ---------------------------------------------------------------------------------------------
// POST /v1/orders

const orderCases: BadCase[] = [
  // missing fields and wrong types
  { name: 'empty object', send: () => postOrder({}), status: 400, paths: ['body.customerId', 'body.product', 'body.quantity', 'body.promisedAt', 'body.route'] },
  { name: 'missing customerId', send: () => postOrder({ ...orderBody(), customerId: undefined }), status: 400, paths: ['body.customerId'] },
  { name: 'missing product', send: () => postOrder({ ...orderBody(), product: undefined }), status: 400, paths: ['body.product'] },
  { name: 'missing quantity', send: () => postOrder({ ...orderBody(), quantity: undefined }), status: 400, paths: ['body.quantity'] },
  { name: 'missing promisedAt', send: () => postOrder({ ...orderBody(), promisedAt: undefined }), status: 400, paths: ['body.promisedAt'] },
  { name: 'missing route', send: () => postOrder({ ...orderBody(), route: undefined }), status: 400, paths: ['body.route'] },
  { name: 'route step missing factoryId', send: () => postOrder(orderBody({ route: routeWith(1, { factoryId: undefined }) })), status: 400, paths: ['body.route[1].factoryId'] },
  { name: 'body is a JSON array', send: () => postOrder([orderBody()]), status: 400 },
  { name: 'body is JSON null', send: () => postOrderRaw('null'), status: 400 },
  { name: 'body is a JSON string', send: () => postOrderRaw('"an order"'), status: 400 },
  { name: 'quantity as a string', send: () => postOrder(orderBody({ quantity: '50' })), status: 400, paths: ['body.quantity'] },
  { name: 'product as a number', send: () => postOrder(orderBody({ product: 12345 })), status: 400, paths: ['body.product'] },
  { name: 'product empty', send: () => postOrder(orderBody({ product: '' })), status: 400, paths: ['body.product'] },
  { name: 'product only spaces', send: () => postOrder(orderBody({ product: '    ' })), status: 400, paths: ['body.product'] },
  { name: 'customerId not a uuid', send: () => postOrder(orderBody({ customerId: 'acme' })), status: 400, paths: ['body.customerId'] },
  { name: 'engineerId as a number', send: () => postOrder(orderBody({ engineerId: 7 })), status: 400, paths: ['body.engineerId'] },
  { name: 'promisedAt as epoch millis', send: () => postOrder(orderBody({ promisedAt: Date.now() + 86400_000 })), status: 400, paths: ['body.promisedAt'] },
  { name: 'route as an object', send: () => postOrder(orderBody({ route: { stage: 'review' } })), status: 400, paths: ['body.route'] },
  { name: 'route step as a string', send: () => postOrder(orderBody({ route: ['review'] })), status: 400, paths: ['body.route[0]'] },
  { name: 'plannedHours as a string', send: () => postOrder(orderBody({ route: routeWith(0, { plannedHours: '2' }) })), status: 400, paths: ['body.route[0].plannedHours'] },
  { name: 'after as a string', send: () => postOrder(orderBody({ route: routeWith(1, { after: 'review' }) })), status: 400, paths: ['body.route[1].after'] },
  // quantity
  { name: 'quantity 0', send: () => postOrder(orderBody({ quantity: 0 })), status: 400, paths: ['body.quantity'] },
  { name: 'quantity negative', send: () => postOrder(orderBody({ quantity: -5 })), status: 400, paths: ['body.quantity'] },
  { name: 'quantity 1e12', send: () => postOrder(orderBody({ quantity: 1e12 })), status: 400, paths: ['body.quantity'] },
  { name: 'quantity 1.5', send: () => postOrder(orderBody({ quantity: 1.5 })), status: 400, paths: ['body.quantity'] },
  { name: 'quantity 1e400 (Infinity) as raw JSON', send: () => postOrderRaw(JSON.stringify(orderBody()).replace('"quantity":50', '"quantity":1e400')), status: 400, paths: ['body.quantity'] },
  // promisedAt
  { name: 'promisedAt a date only', send: () => postOrder(orderBody({ promisedAt: '2030-01-01' })), status: 400, paths: ['body.promisedAt'] },
  { name: 'promisedAt without offset', send: () => postOrder(orderBody({ promisedAt: '2030-01-01T10:00:00' })), status: 400, paths: ['body.promisedAt'] },
  { name: 'promisedAt in words', send: () => postOrder(orderBody({ promisedAt: 'next tuesday' })), status: 400, paths: ['body.promisedAt'] },
  { name: 'promisedAt 30 February', send: () => postOrder(orderBody({ promisedAt: '2030-02-30T00:00:00Z' })), status: 400, paths: ['body.promisedAt'] },
  { name: 'promisedAt hour 25', send: () => postOrder(orderBody({ promisedAt: '2030-01-01T25:00:00Z' })), status: 400, paths: ['body.promisedAt'] },
  // route shape
  { name: 'route empty', send: () => postOrder(orderBody({ route: [] })), status: 400, paths: ['body.route'] },
  {
    name: 'route of 41 steps',
    send: () => postOrder(orderBody({ route: Array.from({ length: 41 }, (_, i) => ({ stage: `s${i}`, factoryId: w.fab.id, plannedHours: 1 })) })),
    status: 400,
    paths: ['body.route'],
  },
  { name: 'duplicate stage codes', send: () => postOrder(orderBody({ route: routeWith(1, { stage: 'review' }) })), status: 400, paths: ['body.route[1].stage'] },
  { name: 'after naming a later step', send: () => postOrder(orderBody({ route: routeWith(1, { after: ['review', 'drilling'] }) })), status: 400, paths: ['body.route[1].after[1]'] },
  { name: 'after naming an unknown step', send: () => postOrder(orderBody({ route: routeWith(1, { after: ['painting'] }) })), status: 400, paths: ['body.route[1].after[0]'] },
  { name: 'after naming the step itself', send: () => postOrder(orderBody({ route: routeWith(2, { after: ['drilling'] }) })), status: 400, paths: ['body.route[2].after[0]'] },
  { name: 'after with an invalid stage code', send: () => postOrder(orderBody({ route: routeWith(1, { after: ['Review'] }) })), status: 400, paths: ['body.route[1].after[0]'] },
  { name: 'plannedHours 0', send: () => postOrder(orderBody({ route: routeWith(0, { plannedHours: 0 }) })), status: 400, paths: ['body.route[0].plannedHours'] },
  { name: 'plannedHours negative', send: () => postOrder(orderBody({ route: routeWith(3, { plannedHours: -4 }) })), status: 400, paths: ['body.route[3].plannedHours'] },
  // references
  { name: 'unknown factoryId', send: () => postOrder(orderBody({ route: routeWith(2, { factoryId: randomUUID() }) })), status: 400, paths: ['body.route[2].factoryId'] },
  { name: 'unknown customerId', send: () => postOrder(orderBody({ customerId: randomUUID(), engineerId: undefined })), status: 400, paths: ['body.customerId'] },
  { name: 'engineer of another customer', send: () => postOrder(orderBody({ customerId: w.customerB.id })), status: 400, paths: ['body.engineerId'] },
  { name: 'unknown engineerId', send: () => postOrder(orderBody({ engineerId: randomUUID() })), status: 400, paths: ['body.engineerId'] },
  // strict objects
  { name: 'extra unknown field', send: () => postOrder(orderBody({ priority: 'high' })), status: 400, paths: ['body.priority'] },
  { name: 'extra unknown field in a route step', send: () => postOrder(orderBody({ route: routeWith(0, { cost: 12 }) })), status: 400, paths: ['body.route[0].cost'] },
  { name: 'client-set id', send: () => postOrder(orderBody({ id: randomUUID() })), status: 400, paths: ['body.id'] },
  { name: 'client-set status', send: () => postOrder(orderBody({ status: 'delivered' })), status: 400, paths: ['body.status'] },
  // stage codes
  { name: 'stage code with capitals', send: () => postOrder(orderBody({ route: routeWith(0, { stage: 'Review' }) })), status: 400, paths: ['body.route[0].stage'] },
  { name: 'stage code with SQL', send: () => postOrder(orderBody({ route: routeWith(0, { stage: "review'; drop table orders;--" }) })), status: 400, paths: ['body.route[0].stage'] },
  { name: 'stage code of 41 characters', send: () => postOrder(orderBody({ route: routeWith(0, { stage: 'a'.repeat(41) }) })), status: 400, paths: ['body.route[0].stage'] },
  { name: 'stage code empty', send: () => postOrder(orderBody({ route: routeWith(0, { stage: '' }) })), status: 400, paths: ['body.route[0].stage'] },
  { name: 'stage code with a unicode letter', send: () => postOrder(orderBody({ route: routeWith(0, { stage: 'révision' }) })), status: 400, paths: ['body.route[0].stage'] },
  // text fields
  { name: 'NUL byte in product', send: () => postOrder(orderBody({ product: 'FR4\u0000board' })), status: 400, paths: ['body.product'] },
  { name: 'newline in product', send: () => postOrder(orderBody({ product: 'FR4\nboard' })), status: 400, paths: ['body.product'] },
  { name: 'escape and bell characters in product', send: () => postOrder(orderBody({ product: 'FR4\u001b[31m\u0007board' })), status: 400, paths: ['body.product'] },
  { name: 'DEL character in product', send: () => postOrder(orderBody({ product: 'FR4\u007fboard' })), status: 400, paths: ['body.product'] },
  { name: 'NUL byte in externalRef', send: () => postOrder(orderBody({ externalRef: 'PO-1\u0000' + 'x' })), status: 400, paths: ['body.externalRef'] },
  { name: 'lone UTF-16 surrogate in product', send: () => postOrder(orderBody({ product: 'FR4 \ud800 board' })), status: 400, paths: ['body.product'] },
  { name: 'lone UTF-16 surrogate in externalRef', send: () => postOrder(orderBody({ externalRef: 'PO-\udc00' })), status: 400, paths: ['body.externalRef'] },
  { name: 'a 10k-character product', send: () => postOrder(orderBody({ product: 'x'.repeat(10_000) })), status: 400, paths: ['body.product'] },
  { name: 'a 101-character externalRef', send: () => postOrder(orderBody({ externalRef: 'x'.repeat(101) })), status: 400, paths: ['body.externalRef'] },
  // hostile JSON, sent as text
  {
    name: 'prototype pollution: __proto__ key',
    send: () => postOrderRaw(orderJsonWith('"__proto__":{"polluted":"yes","isAdmin":true}')),
    status: 400,
    then: () => {
      expect(({} as any).polluted).toBeUndefined();
      expect(({} as any).isAdmin).toBeUndefined();
    },
  },
  {
    name: 'prototype pollution: __proto__ inside a route step',
    send: () =>
      postOrderRaw(JSON.stringify(orderBody()).replace('"route":[{', '"route":[{"__proto__":{"polluted":"yes"},')),
    status: 400,
    then: () => expect(({} as any).polluted).toBeUndefined(),
  },
  {
    name: 'prototype pollution: constructor.prototype',
    send: () => postOrderRaw(orderJsonWith('"constructor":{"prototype":{"polluted":"yes"}}')),
    status: 400,
    then: () => expect(({} as any).polluted).toBeUndefined(),
  },
  {
    name: 'deeply nested JSON (5,000 levels) in a field',
    send: () => postOrderRaw(JSON.stringify(orderBody()).replace(/"product":"[^"]*"/, `"product":${'['.repeat(5000)}${']'.repeat(5000)}`)),
    status: 400,
    paths: ['body.product'],
  },
  {
    name: 'deeply nested JSON (5,000 levels) as the body',
    send: () => postOrderRaw(`${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`),
    status: 400,
  },
  {
    name: 'deeply nested JSON (100,000 levels) as the body',
    send: () => postOrderRaw(`${'['.repeat(100_000)}${']'.repeat(100_000)}`),
    status: 400,
  },
  {
    name: 'duplicate JSON keys, the last one invalid',
    send: () => postOrderRaw(JSON.stringify(orderBody()).replace('"quantity":50', '"quantity":50,"quantity":-3')),
    status: 400,
    paths: ['body.quantity'],
  },
  {
    // Two readers of the same text may disagree on which value wins: the request is ambiguous.
    name: 'duplicate JSON keys, both valid',
    send: () => postOrderRaw(JSON.stringify(orderBody()).replace('"quantity":50', '"quantity":50,"quantity":5000')),
    status: 400,
    paths: ['body.quantity'],
  },
  // headers
  { name: 'Idempotency-Key of 300 characters', send: () => postOrder(orderBody(), { 'idempotency-key': 'k'.repeat(300) }), status: 400, paths: ['headers.idempotency-key'] },
  { name: 'Idempotency-Key with a space', send: () => postOrder(orderBody(), { 'idempotency-key': 'my key' }), status: 400, paths: ['headers.idempotency-key'] },
  // who may create
  { name: 'no credentials', send: () => w.anonymous.post('/v1/orders', orderBody()), status: 401 },
  { name: 'a customer creating an order', send: () => w.customerA.api.post('/v1/orders', orderBody()), status: 403 },
  { name: 'a factory key creating an order', send: () => w.fab.api.post('/v1/orders', orderBody()), status: 403 },
];

describe('POST /v1/orders refuses bad input and writes nothing', () => {
  it('accepts the valid body the cases start from (control)', async () => {
    const r = await postOrder(orderBody(), { 'idempotency-key': `control-${randomUUID()}` });
    expect(r.status, r.text).toBe(201);
  });
  it.each(orderCases)('$name', runCase);
});

// ---------------------------------------------------------------------------------------------
// POST /v1/orders/:id/events

const eventCases: BadCase[] = [
  { name: 'missing type', send: () => postEvent({ stage: 'review' }), status: 400, paths: ['body.type'] },
  { name: 'unknown type', send: () => postEvent({ type: 'exploded', stage: 'review' }), status: 400, paths: ['body.type'] },
  { name: 'system type became_late posted by ops', send: () => postEvent({ type: 'became_late' }), status: 400, paths: ['body.type'] },
  { name: 'system type became_at_risk posted by ops', send: () => postEvent({ type: 'became_at_risk' }), status: 400, paths: ['body.type'] },
  { name: 'system type created posted by ops', send: () => postEvent({ type: 'created' }), status: 400, paths: ['body.type'] },
  { name: 'system type became_late posted by a factory', send: () => w.fab.api.post(`/v1/orders/${o.id}/events`, { type: 'became_late' }), status: 400, paths: ['body.type'] },
  { name: 'progress 101', send: () => postEvent({ type: 'stage_progress', stage: 'review', progress: 101 }), status: 400, paths: ['body.progress'] },
  { name: 'progress -1', send: () => postEvent({ type: 'stage_progress', stage: 'review', progress: -1 }), status: 400, paths: ['body.progress'] },
  { name: 'progress "50"', send: () => postEvent({ type: 'stage_progress', stage: 'review', progress: '50' }), status: 400, paths: ['body.progress'] },
  { name: 'progress missing', send: () => postEvent({ type: 'stage_progress', stage: 'review' }), status: 400, paths: ['body.progress'] },
  { name: 'quantityGood negative', send: () => postEvent({ type: 'stage_completed', stage: 'review', quantityGood: -1 }), status: 400, paths: ['body.quantityGood'] },
  { name: 'occurredAt 10 minutes in the future', send: () => postEvent({ type: 'stage_started', stage: 'review', occurredAt: new Date(Date.now() + 10 * 60_000).toISOString() }), status: 400, paths: ['body.occurredAt'] },
  { name: 'occurredAt not RFC 3339', send: () => postEvent({ type: 'stage_started', stage: 'review', occurredAt: 'yesterday' }), status: 400, paths: ['body.occurredAt'] },
  { name: 'stage missing on stage_started', send: () => postEvent({ type: 'stage_started' }), status: 400, paths: ['body.stage'] },
  { name: 'stage code with SQL', send: () => postEvent({ type: 'stage_started', stage: "review'; drop table orders;--" }), status: 400, paths: ['body.stage'] },
  { name: 'extra unknown field', send: () => postEvent({ type: 'stage_started', stage: 'review', operator: 'bob' }), status: 400, paths: ['body.operator'] },
  { name: 'client-set seq', send: () => postEvent({ type: 'note', text: 'hi', seq: 99 }), status: 400, paths: ['body.seq'] },
  { name: 'NUL byte in a note', send: () => postEvent({ type: 'note', text: 'hello\u0000world' }), status: 400, paths: ['body.text'] },
  { name: 'lone UTF-16 surrogate in a note', send: () => postEvent({ type: 'note', text: 'a\udc00b' }), status: 400, paths: ['body.text'] },
  { name: 'lone UTF-16 surrogate in a hold reason', send: () => postEvent({ type: 'hold', reason: '\ud800' + 'x' }), status: 400, paths: ['body.reason'] },
  { name: 'note of 4,001 characters', send: () => postEvent({ type: 'note', text: 'x'.repeat(4001) }), status: 400, paths: ['body.text'] },
  { name: 'hold with an unknown cause', send: () => postEvent({ type: 'hold', cause: 'lunch', reason: 'x' }), status: 400, paths: ['body.cause'] },
  { name: 'shipped without trackingNumber', send: () => postEvent({ type: 'shipped' }), status: 400, paths: ['body.trackingNumber'] },
  { name: 'rerouted to an unknown factory', send: () => postEvent({ type: 'rerouted', stage: 'cam', factoryId: randomUUID() }), status: 400, paths: ['body.factoryId'] },
  { name: 'stage not on the route', send: () => postEvent({ type: 'stage_started', stage: 'painting' }), status: 409, slug: 'stage-not-on-route' },
  { name: 'progress on a stage not on the route', send: () => postEvent({ type: 'stage_progress', stage: 'painting', progress: 10 }), status: 409 },
  { name: 'a stage whose predecessors are not done', send: () => postEvent({ type: 'stage_started', stage: 'smt' }), status: 409, slug: 'predecessors-not-done' },
  { name: 'delivered before shipped', send: () => postEvent({ type: 'delivered' }), status: 409 },
  { name: 'resumed when not on hold', send: () => postEvent({ type: 'resumed' }), status: 409 },
  { name: 'non-uuid order id in the path', send: () => w.ops.post('/v1/orders/not-a-uuid/events', { type: 'note', text: 'hi' }), status: 400, paths: ['params.id'] },
  { name: 'SQL as the order id in the path', send: () => w.ops.post(`/v1/orders/${encodeURIComponent("1' or '1'='1")}/events`, { type: 'note', text: 'hi' }), status: 400, paths: ['params.id'] },
  { name: 'unknown order', send: () => w.ops.post(`/v1/orders/${randomUUID()}/events`, { type: 'note', text: 'hi' }), status: 404 },
  { name: 'Idempotency-Key of 300 characters', send: () => postEvent({ type: 'note', text: 'hi' }, { 'idempotency-key': 'k'.repeat(300) }), status: 400, paths: ['headers.idempotency-key'] },
  { name: 'a factory posting for another factory\'s stage', send: () => w.fab.api.post(`/v1/orders/${o.id}/events`, { type: 'stage_started', stage: 'components' }), status: 403 },
  { name: 'a factory posting a hold', send: () => w.fab.api.post(`/v1/orders/${o.id}/events`, { type: 'hold', reason: 'x' }), status: 403 },
  { name: 'a factory not on the route', send: () => w.logistics.api.post(`/v1/orders/${o.id}/events`, { type: 'stage_started', stage: 'review' }), status: 403 },
  { name: 'a customer posting an event', send: () => w.customerA.api.post(`/v1/orders/${o.id}/events`, { type: 'note', text: 'hi' }), status: 403 },
  { name: 'another customer posting an event', send: () => w.customerB.api.post(`/v1/orders/${o.id}/events`, { type: 'note', text: 'hi' }), status: [403, 404] },
];

describe('POST /v1/orders/:id/events refuses bad input and writes nothing', () => {
  it.each(eventCases)('$name', runCase);

});

// ---------------------------------------------------------------------------------------------
// Valid RFC 3339 times near year zero: the contract does not forbid them, so each is either
// refused 400 naming the field (and nothing written) or kept exactly as sent; never a 5xx.

const ANCIENT = ['0000-01-01T00:00:00.000Z', '0001-01-01T00:00:00.000Z', '0099-06-01T00:00:00.000Z'];

describe('times near year zero are refused 400 or kept as sent, never a 5xx or another date', () => {
  it.each(ANCIENT)('promisedAt %s', async (promisedAt) => {
    const before = await snapshot(t.database.db);
    const r = await postOrder(orderBody({ promisedAt }));
    if (r.status === 201) {
      expect(r.body.promisedAt, 'the promise returned is not the one sent').toBe(promisedAt);
      expect((await w.ops.get(`/v1/orders/${r.body.id}`)).body.promisedAt, 'the promise stored is not the one sent').toBe(promisedAt);
    } else {
      expectProblem(r, 400, ['body.promisedAt']);
      expect(await snapshot(t.database.db), 'the database changed').toEqual(before);
    }
  });

  it.each(ANCIENT)('occurredAt %s', async (occurredAt) => {
    const order = await w.createOrder();
    const before = await snapshot(t.database.db);
    const r = await w.ops.post(`/v1/orders/${order.id}/events`, { type: 'note', text: 'ancient', occurredAt });
    if (r.status === 201) {
      expect(r.body.occurredAt, 'the time returned is not the time sent').toBe(occurredAt);
      expect((await eventsOf(order.id)).find((e) => e.seq === 2)?.occurredAt, 'the time stored is not the time sent').toBe(occurredAt);
    } else {
      expectProblem(r, 400, ['body.occurredAt']);
      expect(await snapshot(t.database.db), 'the database changed').toEqual(before);
    }
  });

  it.each(ANCIENT)('promisedBefore=%s', async (promisedBefore) => {
    const r = await listOrders(`promisedBefore=${promisedBefore}`);
    if (r.status === 200) expect(r.body.items.every((x: any) => Date.parse(x.promisedAt) < Date.parse(promisedBefore))).toBe(true);
    else expectProblem(r, 400, ['query.promisedBefore']);
  });
});

// ---------------------------------------------------------------------------------------------
// POST /v1/events/batch

/** A batch item: a note on order `o` unless `over` says otherwise (a `type` of its own drops the note's text). */
const item = (over: Record<string, unknown> = {}) => ({
  orderId: o.id,
  idempotencyKey: `b-${randomUUID()}`,
  ...('type' in over ? {} : { type: 'note', text: 'batch note' }),
  ...over,
});

const batchCases: BadCase[] = [
  { name: 'events missing', send: () => postBatch({}), status: 400, paths: ['body.events'] },
  { name: 'events not an array', send: () => postBatch({ events: item() }), status: 400, paths: ['body.events'] },
  { name: 'events a string', send: () => postBatch({ events: 'all of them' }), status: 400, paths: ['body.events'] },
  { name: 'events empty', send: () => postBatch({ events: [] }), status: 400, paths: ['body.events'] },
  { name: 'events of 501 items', send: () => postBatch({ events: Array.from({ length: 501 }, () => item()) }), status: 400, paths: ['body.events'] },
  { name: 'an item that is not an object', send: () => postBatch({ events: [item(), 42] }), status: 400, paths: ['body.events[1]'] },
  { name: 'extra unknown field beside events', send: () => postBatch({ events: [item()], atomic: true }), status: 400, paths: ['body.atomic'] },
  { name: 'the body a bare array', send: () => postBatch([item()]), status: 400 },
  { name: 'a customer posting a batch', send: () => w.customerA.api.post('/v1/events/batch', { events: [item()] }), status: 403 },
  { name: 'no credentials', send: () => w.anonymous.post('/v1/events/batch', { events: [item()] }), status: 401 },
];

const eventsOf = async (orderId: string) => (await w.ops.get(`/v1/orders/${orderId}/events?limit=1000`)).body.items as any[];

describe('POST /v1/events/batch', () => {
  it.each(batchCases)('refuses the whole batch: $name', runCase);

  it('answers an item without idempotencyKey 400 and processes the others', async () => {
    const order = await w.createOrder();
    const before = await snapshot(t.database.db);
    const r = await postBatch({
      events: [
        item({ orderId: order.id, type: 'stage_started', stage: 'review' }),
        { orderId: order.id, type: 'note', text: 'no key' },
        item({ orderId: order.id, type: 'note', text: 'with a key' }),
      ],
    });
    expect(r.status, r.text).toBe(200);
    expect(r.body.results.map((x: any) => x.status)).toEqual([201, 400, 201]);
    expectProblemBody(r.body.results[1].error, 400);
    expect(names(r.body.results[1].error.errors, 'events[1].idempotencyKey'), JSON.stringify(r.body.results[1])).toBe(true);
    expect(r.body.results[1].event).toBeUndefined();
    expect(r.body.results[0].event).toMatchObject({ orderId: order.id, seq: 2, type: 'stage_started' });
    expect(r.body.results[2].event).toMatchObject({ orderId: order.id, seq: 3, type: 'note' });
    const after = await snapshot(t.database.db);
    expect(after.counts).toEqual({ ...before.counts, events: before.counts.events! + 2, idempotency_keys: before.counts.idempotency_keys! + 2 });
    expect((await eventsOf(order.id)).map((e) => [e.seq, e.type, e.data?.text])).toEqual([
      [1, 'created', undefined],
      [2, 'stage_started', undefined],
      [3, 'note', 'with a key'],
    ]);
  });

  it('accepts a valid item 1 and refuses an invalid item 2: only item 1 is written', async () => {
    const order = await w.createOrder();
    const before = await snapshot(t.database.db);
    const r = await postBatch({
      events: [
        item({ orderId: order.id, type: 'stage_started', stage: 'review' }),
        item({ orderId: order.id, type: 'stage_progress', stage: 'review', progress: 101 }),
      ],
    });
    expect(r.status, r.text).toBe(200);
    expect(r.body.results).toHaveLength(2);
    expect(r.body.results[0]).toMatchObject({ status: 201, event: { orderId: order.id, seq: 2, type: 'stage_started', stage: 'review' } });
    expect(r.body.results[1].status).toBe(400);
    expect(r.body.results[1].event).toBeUndefined();
    expectProblemBody(r.body.results[1].error, 400);
    expect(names(r.body.results[1].error.errors, 'events[1].progress'), JSON.stringify(r.body.results[1])).toBe(true);
    const after = await snapshot(t.database.db);
    expect(after.counts).toEqual({ ...before.counts, events: before.counts.events! + 1, idempotency_keys: before.counts.idempotency_keys! + 1 });
    const mine = after.orders.find((x) => x.id === order.id)!;
    expect(mine.last_seq).toBe(2);
    const events = await eventsOf(order.id);
    expect(events.map((e) => [e.seq, e.type])).toEqual([
      [1, 'created'],
      [2, 'stage_started'],
    ]);
    expect(events[1].id).toBe(r.body.results[0].event.id);
    const step = (await w.ops.get(`/v1/orders/${order.id}`)).body.route.find((s: any) => s.stage === 'review');
    expect(step).toMatchObject({ status: 'in_progress', progress: 0 });
  });

  it('refuses an item whose text cannot be stored (lone surrogate) without sinking the valid item beside it', async () => {
    const order = await w.createOrder();
    const before = await snapshot(t.database.db);
    const r = await postBatch({ events: [item({ orderId: order.id, text: 'fine' }), item({ orderId: order.id, text: 'a\udc00b' })] });
    expect(r.status, r.text).toBe(200);
    expect(r.body.results.map((x: any) => x.status)).toEqual([201, 400]);
    expectProblemBody(r.body.results[1].error, 400);
    expect(names(r.body.results[1].error.errors, 'events[1].text'), JSON.stringify(r.body.results[1])).toBe(true);
    const after = await snapshot(t.database.db);
    expect(after.counts.events).toBe(before.counts.events! + 1);
    expect((await eventsOf(order.id)).map((e) => [e.seq, e.type, e.data?.text])).toEqual([
      [1, 'created', undefined],
      [2, 'note', 'fine'],
    ]);
  });

  it('refuses every item of a batch of bad items, each with its own problem, and writes nothing', async () => {
    const before = await snapshot(t.database.db);
    const r = await postBatch({
      events: [
        item({ type: 'stage_progress', stage: 'review', progress: 101 }),
        item({ type: 'exploded' }),
        item({ type: 'stage_progress', stage: 'review', progress: '50' }),
        item({ orderId: 'not-a-uuid' }),
        item({ type: 'became_late' }),
        item({ orderId: randomUUID() }),
        item({ type: 'stage_started', stage: 'painting' }),
        item({ idempotencyKey: 'k'.repeat(300) }),
        item({ type: 'stage_started', stage: 'review', occurredAt: new Date(Date.now() + 10 * 60_000).toISOString() }),
        item({ type: 'rerouted', stage: 'cam', factoryId: randomUUID() }),
        item({ text: 'a\u0000b' }),
        item({ color: 'red' }),
      ],
    });
    expect(r.status, r.text).toBe(200);
    const results = r.body.results as any[];
    expect(results.map((x) => x.status)).toEqual([400, 400, 400, 400, 400, 404, 409, 400, 400, 400, 400, 400]);
    for (const x of results) {
      expect(x.event).toBeUndefined();
      expectProblemBody(x.error, x.status);
    }
    const expectedPaths: Array<[number, string]> = [
      [0, 'events[0].progress'],
      [1, 'events[1].type'],
      [2, 'events[2].progress'],
      [3, 'events[3].orderId'],
      [4, 'events[4].type'],
      [7, 'events[7].idempotencyKey'],
      [8, 'events[8].occurredAt'],
      [9, 'events[9].factoryId'],
      [10, 'events[10].text'],
      [11, 'events[11].color'],
    ];
    expect(await snapshot(t.database.db), 'the database changed').toEqual(before);
    for (const [i, path] of expectedPaths) {
      expect(names(results[i].error.errors, path), `${path}: ${JSON.stringify(results[i])}`).toBe(true);
    }
  });

  it('answers a factory item for an order not routed to it 404, another order\'s item 201', async () => {
    const order = await w.createOrder({ route: [{ stage: 'review', factoryId: w.fab.id, plannedHours: 1 }] });
    const before = await snapshot(t.database.db);
    const r = await w.logistics.api.post('/v1/events/batch', {
      events: [item({ orderId: order.id, type: 'stage_started', stage: 'review' }), item({ orderId: o.id, type: 'note', text: 'hi' })],
    });
    expect(r.status, r.text).toBe(200);
    expect(r.body.results.map((x: any) => x.status)).toEqual([404, 201]);
    expectProblemBody(r.body.results[0].error, 404);
    const after = await snapshot(t.database.db);
    expect(after.counts.events).toBe(before.counts.events! + 1);
    expect(after.orders.find((x) => x.id === order.id)).toEqual(before.orders.find((x) => x.id === order.id));
  });
});

// ---------------------------------------------------------------------------------------------
// GET /v1/orders and other reads

const cursorOf = (c: unknown) => Buffer.from(JSON.stringify(c)).toString('base64url');

const queryCases: BadCase[] = [
  { name: 'limit=0', send: () => listOrders('limit=0'), status: 400, paths: ['query.limit'] },
  { name: 'limit=201', send: () => listOrders('limit=201'), status: 400, paths: ['query.limit'] },
  { name: 'limit=abc', send: () => listOrders('limit=abc'), status: 400, paths: ['query.limit'] },
  { name: 'limit=1.5', send: () => listOrders('limit=1.5'), status: 400, paths: ['query.limit'] },
  { name: 'limit=-1', send: () => listOrders('limit=-1'), status: 400, paths: ['query.limit'] },
  { name: 'limit given twice', send: () => listOrders('limit=1&limit=2'), status: 400, paths: ['query.limit'] },
  { name: 'late=maybe', send: () => listOrders('late=maybe'), status: 400, paths: ['query.late'] },
  { name: 'atRisk=1', send: () => listOrders('atRisk=1'), status: 400, paths: ['query.atRisk'] },
  { name: 'sort=bogus', send: () => listOrders('sort=bogus'), status: 400, paths: ['query.sort'] },
  { name: 'sort with SQL', send: () => listOrders(`sort=${encodeURIComponent('promised_at; drop table orders')}`), status: 400, paths: ['query.sort'] },
  { name: 'cursor=garbage', send: () => listOrders('cursor=garbage'), status: 400, paths: ['query.cursor'] },
  {
    name: 'cursor of well-formed JSON with a SQL id',
    send: () =>
      listOrders(`cursor=${cursorOf({ s: 'promisedAt', k: '2030-01-01T00:00:00.000Z', id: "x' or 1=1--", ref: new Date().toISOString() })}`),
    status: 400,
    paths: ['query.cursor'],
  },
  {
    name: 'cursor with an invalid sort key',
    send: () =>
      listOrders(`cursor=${cursorOf({ s: 'promisedAt', k: 'not a date', id: randomUUID(), ref: new Date().toISOString() })}`),
    status: 400,
    paths: ['query.cursor'],
  },
  {
    name: 'cursor with a non-numeric lateness key',
    send: () =>
      listOrders(`sort=-lateness&cursor=${cursorOf({ s: '-lateness', k: 'abc', id: randomUUID(), ref: new Date().toISOString() })}`),
    status: 400,
    paths: ['query.cursor'],
  },
  {
    name: 'cursor with a numeric promisedAt key out of range',
    send: () => listOrders(`cursor=${cursorOf({ s: 'promisedAt', k: 1e20, id: randomUUID(), ref: new Date().toISOString() })}`),
    status: 400,
    paths: ['query.cursor'],
  },
  {
    name: 'cursor with an object as lateness key',
    send: () => listOrders(`sort=-lateness&cursor=${cursorOf({ s: '-lateness', k: { a: 1 }, id: randomUUID(), ref: new Date().toISOString() })}`),
    status: 400,
    paths: ['query.cursor'],
  },
  {
    name: 'cursor with a reference time out of range',
    send: () => listOrders(`cursor=${cursorOf({ s: 'promisedAt', k: new Date().toISOString(), id: randomUUID(), ref: '+275760-09-13T00:00:00.000Z' })}`),
    status: 400,
    paths: ['query.cursor'],
  },
  {
    name: 'cursor with 36 dashes as the id',
    send: () => listOrders(`cursor=${cursorOf({ s: 'promisedAt', k: new Date().toISOString(), id: '-'.repeat(36), ref: new Date().toISOString() })}`),
    status: 400,
    paths: ['query.cursor'],
  },
  {
    name: 'cursor of another sort',
    send: () =>
      listOrders(`sort=-updatedAt&cursor=${cursorOf({ s: 'promisedAt', k: '2030-01-01T00:00:00.000Z', id: randomUUID(), ref: new Date().toISOString() })}`),
    status: 400,
    paths: ['query.cursor'],
  },
  { name: 'cursor of 600 characters', send: () => listOrders(`cursor=${'a'.repeat(600)}`), status: 400, paths: ['query.cursor'] },
  { name: 'unknown query parameter', send: () => listOrders('colour=red'), status: 400, paths: ['query.colour'] },
  { name: 'status=bogus', send: () => listOrders('status=open,bogus'), status: 400, paths: ['query.status'] },
  { name: 'customerId not a uuid', send: () => listOrders('customerId=acme'), status: 400, paths: ['query.customerId'] },
  { name: 'factoryId not a uuid', send: () => listOrders(`factoryId=${encodeURIComponent("' or 1=1--")}`), status: 400, paths: ['query.factoryId'] },
  { name: 'promisedBefore not RFC 3339', send: () => listOrders('promisedBefore=tomorrow'), status: 400, paths: ['query.promisedBefore'] },
  { name: 'country not ISO 3166', send: () => listOrders('country=XX'), status: 400, paths: ['query.country'] },
  { name: 'stage with capitals', send: () => listOrders('stage=Review'), status: 400, paths: ['query.stage'] },
  { name: 'NUL byte in product', send: () => listOrders('product=a%00b'), status: 400, paths: ['query.product'] },
  { name: 'CSV with an unknown query parameter', send: () => w.ops.get('/v1/orders.csv?limit=10'), status: 400, paths: ['query.limit'] },
  { name: 'GET /v1/orders/:id with a non-uuid id', send: () => w.ops.get('/v1/orders/12345'), status: 400, paths: ['params.id'] },
  { name: 'GET /v1/orders/:id unknown', send: () => w.ops.get(`/v1/orders/${randomUUID()}`), status: 404 },
  { name: "GET another customer's order", send: () => w.customerB.api.get(`/v1/orders/${o.id}`), status: 404 },
  { name: 'GET events with limit=0', send: () => w.ops.get(`/v1/orders/${o.id}/events?limit=0`), status: 400, paths: ['query.limit'] },
  { name: 'GET events with after=-1', send: () => w.ops.get(`/v1/orders/${o.id}/events?after=-1`), status: 400, paths: ['query.after'] },
  { name: 'GET events with an unknown parameter', send: () => w.ops.get(`/v1/orders/${o.id}/events?since=1`), status: 400, paths: ['query.since'] },
];

describe('GET /v1/orders and other reads refuse bad queries', () => {
  it.each(queryCases)('$name', runCase);
});

// ---------------------------------------------------------------------------------------------
// Transport: bodies, content types, routes, methods, headers, credentials

const transportCases: BadCase[] = [
  { name: 'malformed JSON', send: () => postOrderRaw('{"product": "x", '), status: 400 },
  { name: 'malformed JSON: single quotes', send: () => postOrderRaw("{'product': 'x'}"), status: 400 },
  { name: 'malformed JSON: trailing garbage', send: () => postOrderRaw(`${JSON.stringify(orderBody())}}`), status: 400 },
  { name: 'empty body with application/json', send: () => postOrderRaw(''), status: 400 },
  { name: 'empty body to the events endpoint', send: () => w.ops.request('POST', `/v1/orders/${o.id}/events`, { raw: '', headers: json }), status: 400 },
  { name: 'content-type text/plain', send: () => postOrderRaw(JSON.stringify(orderBody()), { 'content-type': 'text/plain' }), status: 415 },
  { name: 'content-type application/x-www-form-urlencoded', send: () => postOrderRaw('customerId=x&quantity=1', { 'content-type': 'application/x-www-form-urlencoded' }), status: 415 },
  { name: 'content-type multipart/form-data', send: () => postOrderRaw('--b\r\n\r\nx\r\n--b--', { 'content-type': 'multipart/form-data; boundary=b' }), status: 415 },
  { name: 'content-type application/xml', send: () => postOrderRaw('<order/>', { 'content-type': 'application/xml' }), status: 415 },
  {
    name: 'no content-type with a body',
    send: () => postOrderRaw(new TextEncoder().encode(JSON.stringify(orderBody())), {}),
    status: [400, 415],
  },
  { name: 'text/plain to the batch endpoint', send: () => w.ops.request('POST', '/v1/events/batch', { raw: '{"events":[]}', headers: { 'content-type': 'text/plain' } }), status: 415 },
  { name: 'unknown route', send: () => w.ops.get('/v1/widgets'), status: 404 },
  { name: 'unknown route, POST', send: () => w.ops.post('/v1/orders/bulk-delete', {}), status: 404 },
  { name: 'unknown route without credentials', send: () => w.anonymous.get('/v2/orders'), status: 404 },
  { name: 'unknown method on a known path: DELETE /v1/orders', send: () => w.ops.request('DELETE', '/v1/orders'), status: [404, 405] },
  { name: 'unknown method on a known path: PUT /v1/orders/:id', send: () => w.ops.request('PUT', `/v1/orders/${o.id}`, { body: orderBody() }), status: [404, 405] },
  { name: 'unknown method on a known path: PATCH /v1/orders/:id', send: () => w.ops.request('PATCH', `/v1/orders/${o.id}`, { body: { quantity: 1 } }), status: [404, 405] },
  { name: 'unknown method on a known path: DELETE /v1/orders/:id/events', send: () => w.ops.request('DELETE', `/v1/orders/${o.id}/events`), status: [404, 405] },
  { name: 'bad percent-encoding in the path', send: () => w.ops.get('/v1/orders/%E0%A4%A'), status: [400, 404] },
  { name: 'a path parameter longer than the router allows', send: () => w.ops.get(`/v1/orders/${'a'.repeat(300)}`), status: [400, 404, 414] },
  { name: 'Idempotency-Key of 300 characters', send: () => postOrder(orderBody(), { 'idempotency-key': 'x'.repeat(300) }), status: 400, paths: ['headers.idempotency-key'] },
  { name: 'a malformed bearer token', send: () => w.anonymous.as('not.a.jwt').get('/v1/orders'), status: 401 },
  { name: 'an expired bearer token', send: async () => w.anonymous.as(await t.token({ role: 'ops' }, -60)).get('/v1/orders'), status: 401 },
  { name: 'a token with an unknown role', send: async () => w.anonymous.as(await t.token({ role: 'root' as 'ops' })).get('/v1/orders'), status: 401 },
  { name: 'an unknown API key', send: () => w.anonymous.as({ apiKey: 'osk_nope' }).post(`/v1/orders/${o.id}/events`, { type: 'note', text: 'hi' }), status: 401 },
  { name: 'an API key with SQL', send: () => w.anonymous.as({ apiKey: "' or '1'='1" }).get('/v1/orders'), status: 401 },
];

describe('transport: malformed requests', () => {
  it.each(transportCases)('$name', runCase);
});

// ---------------------------------------------------------------------------------------------
// Body size limit, on an app of its own

describe('body size limit (BODY_LIMIT_BYTES=2048)', () => {
  let small: TestApp;
  let ops: ReturnType<TestApp['api']['as']>;
  beforeAll(async () => {
    small = await startTestApp({ BODY_LIMIT_BYTES: '2048' });
    ops = small.api.as(await small.token({ role: 'ops' }));
  });
  afterAll(async () => {
    await small?.close();
  });

  const fourKb = () => JSON.stringify({ customerId: randomUUID(), product: 'x'.repeat(4096), quantity: 1, promisedAt: inAWeek(), route: [] });

  it('answers an application/json body of 4 KB 413', async () => {
    const before = await snapshot(small.database.db);
    const r = await ops.request('POST', '/v1/orders', { raw: fourKb(), headers: json });
    expectProblem(r, 413);
    expect(await snapshot(small.database.db)).toEqual(before);
  });

  it('answers a 4 KB body to the batch endpoint 413', async () => {
    const r = await ops.request('POST', '/v1/events/batch', { raw: JSON.stringify({ events: [{ text: 'x'.repeat(4096) }] }), headers: json });
    expectProblem(r, 413);
  });

  it('answers a chunked 4 KB body without content-length 413', async () => {
    const before = await snapshot(small.database.db);
    const token = await small.token({ role: 'ops' });
    const url = new URL('/v1/orders', small.baseUrl);
    const r = await new Promise<Reply>((resolve, reject) => {
      const req = httpRequest(
        url,
        { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'transfer-encoding': 'chunked' } },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => {
            const headers = new Headers();
            for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') headers.set(k, v);
            answered.push({ method: 'POST', url: url.toString(), status: res.statusCode ?? 0 });
            resolve({ status: res.statusCode ?? 0, headers, text, body: text ? JSON.parse(text) : undefined });
          });
        },
      );
      // The server may answer and close before the whole body is written.
      req.on('error', reject);
      const body = fourKb();
      for (let i = 0; i < body.length; i += 512) req.write(body.slice(i, i + 512));
      req.end();
    });
    expectProblem(r, 413);
    expect(await snapshot(small.database.db)).toEqual(before);
  });

  it('still validates a body under the limit (control)', async () => {
    const r = await ops.post('/v1/orders', {});
    expectProblem(r, 400, ['body.customerId']);
  });
});

// ---------------------------------------------------------------------------------------------
// Rate limiting, on an app of its own

describe('rate limiting (5 a minute per caller, 3 per anonymous address)', () => {
  let limited: TestApp;
  beforeAll(async () => {
    limited = await startTestApp({ RATE_LIMIT_PER_MINUTE: '5', RATE_LIMIT_ANONYMOUS_PER_MINUTE: '3' });
  });
  afterAll(async () => {
    await limited?.close();
  });

  const expectLimited = (r: Reply) => {
    expectProblem(r, 429);
    const retryAfter = r.headers.get('retry-after');
    expect(retryAfter, 'retry-after header').toBeTruthy();
    expect(Number(retryAfter)).toBeGreaterThan(0);
  };

  it('answers the 6th request of one caller 429 with Retry-After, and still serves another caller', async () => {
    const one = limited.api.as(await limited.token({ role: 'ops', sub: 'ops-one' }));
    const two = limited.api.as(await limited.token({ role: 'ops', sub: 'ops-two' }));
    for (let i = 1; i <= 5; i++) {
      const r = await one.get('/v1/orders');
      expect(r.status, `request ${i}: ${r.text}`).toBe(200);
    }
    const sixth = await one.get('/v1/orders');
    expectLimited(sixth);
    // A bad request of a limited caller is still limited, and writes nothing.
    const before = await snapshot(limited.database.db);
    expectLimited(await one.post('/v1/orders', {}));
    expect(await snapshot(limited.database.db)).toEqual(before);

    const other = await two.get('/v1/orders');
    expect(other.status, other.text).toBe(200);
  });

  it('limits anonymous callers by address at 3, without limiting identified callers', async () => {
    for (let i = 1; i <= 3; i++) {
      const r = await limited.api.get('/v1/orders');
      expectProblem(r, 401);
    }
    expectLimited(await limited.api.get('/v1/orders'));
    // A caller with a bad token is anonymous too: counted by the same address.
    expectLimited(await limited.api.as('not.a.jwt').get('/v1/orders'));
    const known = await limited.api.as(await limited.token({ role: 'ops', sub: 'ops-three' })).get('/v1/orders');
    expect(known.status, known.text).toBe(200);
  });

  it('does not let an anonymous caller escape its limit with a forged X-Forwarded-For', async () => {
    // Spend the address's allowance (already spent when the test above ran), then forge the header:
    // the service is reached directly, so X-Forwarded-For is only the client's word.
    for (let i = 0; i < 4; i++) expect((await limited.api.get('/v1/orders')).status).toBeLessThan(500);
    const r = await limited.api.get('/v1/orders', { 'x-forwarded-for': '203.0.113.77' });
    expectLimited(r);
  });
});

// ---------------------------------------------------------------------------------------------

describe('the whole file', () => {
  it('never got a 5xx', () => {
    expect(answered.length).toBeGreaterThan(200);
    expect(answered.filter((a) => a.status >= 500)).toEqual([]);
  });
});
