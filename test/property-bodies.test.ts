// Generated bad input for every REST body (fast-check): valid bodies with one field made hostile
// or removed, hostile or polluting keys added, whole bodies of any JSON, raw bodies that are not
// the JSON they claim (invalid UTF-8, NUL, deep nesting, duplicate keys) and wrong content types.
// Each answer: never a 5xx, a refusal is problem+json naming the field, and a refused request
// leaves the database exactly as it was (the fingerprint of every table is compared after each).
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from './helpers/app.js';
import type { ApiClient } from './helpers/http.js';
import {
  answerOf,
  CONTENT_TYPES,
  expectWellRefused,
  fingerprint,
  HOSTILE_KEYS,
  hostileValue,
  rawBodies,
  withRawKey,
  type Answer,
} from './helpers/hostile.js';
import { createWorld, standardRoute, type World } from './helpers/world.js';

let t: TestApp;
let w: World;
let order: any;
let baseline: string;
const tally = { cases: 0, accepted: 0, refused: 0 };
const RUNS = Number(process.env.PROPERTY_RUNS ?? 1);

beforeAll(async () => {
  t = await startTestApp({ RATE_LIMIT_PER_MINUTE: '100000000', RATE_LIMIT_ANONYMOUS_PER_MINUTE: '100000000' });
  w = await createWorld(t);
  order = await w.createOrder();
  baseline = await fingerprint(t.database.db);
});
afterAll(async () => {
  console.log(`property-bodies: ${tally.cases} generated requests (${tally.refused} refused, ${tally.accepted} accepted), no 5xx, no partial write`);
  await t?.close();
});

/** A route that takes a body, who may call it, and a valid body to start from. */
interface Target {
  name: string;
  path: () => string;
  caller: () => ApiClient;
  valid: () => Record<string, unknown>;
  headers?: () => Record<string, string>;
}

const TARGETS: Target[] = [
  { name: 'POST /v1/customers', path: () => '/v1/customers', caller: () => w.admin, valid: () => ({ name: 'Acme', country: 'DE' }) },
  {
    name: 'POST /v1/customers/:id/engineers',
    path: () => `/v1/customers/${w.customerA.id}/engineers`,
    caller: () => w.admin,
    valid: () => ({ name: 'Ada', email: 'ada@acme.example' }),
  },
  {
    name: 'POST /v1/factories',
    path: () => '/v1/factories',
    caller: () => w.admin,
    valid: () => ({ name: 'Fab', kind: 'fabrication', country: 'CN', timezone: 'Asia/Shanghai' }),
  },
  { name: 'POST /v1/factories/:id/api-keys', path: () => `/v1/factories/${w.fab.id}/api-keys`, caller: () => w.admin, valid: () => ({ label: 'mes' }) },
  {
    name: 'POST /v1/orders',
    path: () => '/v1/orders',
    caller: () => w.ops,
    valid: () => ({
      customerId: w.customerA.id,
      engineerId: w.customerA.engineerId,
      externalRef: 'PO-1',
      product: 'board',
      quantity: 5,
      promisedAt: new Date(Date.now() + 7 * 86400_000).toISOString(),
      route: standardRoute(w),
    }),
    headers: () => ({ 'idempotency-key': randomUUID() }),
  },
  {
    name: 'POST /v1/orders/:id/events (note)',
    path: () => `/v1/orders/${order.id}/events`,
    caller: () => w.fab.api,
    valid: () => ({ type: 'note', text: 'checked', stage: 'review' }),
    headers: () => ({ 'idempotency-key': randomUUID() }),
  },
  {
    name: 'POST /v1/orders/:id/events (stage_progress)',
    path: () => `/v1/orders/${order.id}/events`,
    caller: () => w.fab.api,
    valid: () => ({ type: 'stage_progress', stage: 'review', progress: 0, quantityGood: 1, occurredAt: new Date().toISOString() }),
  },
  {
    name: 'POST /v1/orders/:id/events (hold, as ops)',
    path: () => `/v1/orders/${order.id}/events`,
    caller: () => w.ops,
    valid: () => ({ type: 'hold', cause: 'material', reason: 'waiting' }),
  },
  {
    name: 'POST /v1/events/batch',
    path: () => '/v1/events/batch',
    caller: () => w.fab.api,
    valid: () => ({ events: [{ orderId: order.id, idempotencyKey: randomUUID(), type: 'note', text: 'batch' }] }),
  },
];

/** Sends one body; checks the contract and that a refusal wrote nothing. */
async function send(target: Target, body: string | Uint8Array, contentType: string | undefined, what: string): Promise<Answer & { refused: boolean }> {
  const headers: Record<string, string> = { ...target.headers?.() };
  const creds = (target.caller() as unknown as { credentials: { token?: string; apiKey?: string } }).credentials;
  if (creds.token) headers.authorization = `Bearer ${creds.token}`;
  if (creds.apiKey) headers['x-api-key'] = creds.apiKey;
  if (contentType !== undefined) headers['content-type'] = contentType;
  const res = await fetch(`${t.baseUrl}${target.path()}`, { method: 'POST', headers, body });
  const a = await answerOf(res);
  tally.cases++;
  const label = `${target.name} with ${what}`;
  expectWellRefused(a, label);
  // A batch answers 200 with one result per item: a refused item is a refusal too.
  const itemsRefused = target.name.includes('batch') && a.status === 200 && a.body.results.every((r: any) => r.status >= 400);
  if (a.status >= 400 || itemsRefused) {
    tally.refused++;
    for (const r of itemsRefused ? a.body.results : []) expectWellRefused({ ...a, status: r.status, body: r.error, contentType: 'application/problem+json', text: JSON.stringify(r.error) }, `${label} (item)`);
    expect(await fingerprint(t.database.db), `${label} wrote something: ${a.text.slice(0, 300)}`).toBe(baseline);
  } else {
    tally.accepted++;
    baseline = await fingerprint(t.database.db);
  }
  return { ...a, refused: a.status >= 400 || itemsRefused };
}

/** A path into the valid body: a top-level field, or one of the first route step or batch item. */
function fieldsOf(body: Record<string, unknown>): string[][] {
  const top = Object.keys(body).map((k) => [k]);
  const nested = (['route', 'events'] as const).flatMap((k) =>
    Array.isArray(body[k]) ? Object.keys((body[k] as Array<Record<string, unknown>>)[0]!).map((f) => [k, '0', f]) : [],
  );
  return [...top, ...nested];
}

function setAt(body: any, path: string[], value: unknown, remove: boolean) {
  let node = body;
  for (const p of path.slice(0, -1)) node = node[p];
  if (remove) delete node[path.at(-1)!];
  else node[path.at(-1)!] = value;
}

const target = fc.constantFrom(...TARGETS);

describe('generated bad bodies: never a 5xx, always problem+json naming the field, nothing written', () => {
  it('one field of a valid body made hostile, or removed', async () => {
    const arb = target.chain((tg) =>
      fc.record({
        tg: fc.constant(tg),
        path: fc.constantFrom(...fieldsOf(tg.valid())),
        remove: fc.integer({ min: 0, max: 6 }).map((n) => n === 0),
        value: hostileValue,
      }),
    );
    await fc.assert(
      fc.asyncProperty(arb, async ({ tg, path, remove, value }) => {
        const body = tg.valid();
        setAt(body, path, value, remove);
        const a = await send(tg, JSON.stringify(body), 'application/json', `${path.join('.')} ${remove ? 'removed' : `= ${JSON.stringify(value)?.slice(0, 80)}`}`);
        // A refused field is named: by its path in errors, or in the detail.
        if (a.status === 400 && String(a.body.type).endsWith('/validation-failed')) {
          const named = JSON.stringify([a.body.errors, a.body.detail]);
          expect(named, `${tg.name}: ${path.join('.')} not named in ${named}`).toContain(path.at(-1) === '0' ? path[0] : path.at(-1));
        }
      }),
      { numRuns: 1700 * RUNS },
    );
  }, 120_000);

  it('hostile and polluting keys added to a valid body, at the top or nested', async () => {
    const arb = fc.record({ tg: target, key: fc.constantFrom(...HOSTILE_KEYS), value: hostileValue, nested: fc.boolean() });
    await fc.assert(
      fc.asyncProperty(arb, async ({ tg, key, value, nested }) => {
        const body = tg.valid();
        const list = (body.route ?? body.events) as Array<Record<string, unknown>> | undefined;
        const inner = nested && list ? list : undefined;
        let text: string;
        if (inner) {
          // the raw key goes inside the first item (a parsed __proto__ would become the prototype)
          const item = withRawKey(inner[0]!, key, value);
          inner[0] = { __raw__: true };
          text = JSON.stringify(body).replace('{"__raw__":true}', item);
        } else {
          text = withRawKey(body, key, value);
        }
        const a = await send(tg, text, 'application/json', `key ${JSON.stringify(key.slice(0, 20))}${inner ? ' (nested)' : ''}`);
        // No unknown key is ever accepted: schemas are strict, __proto__ and constructor are refused.
        expect(a.refused, `${tg.name} accepted the key ${key.slice(0, 20)}: ${a.text.slice(0, 200)}`).toBe(true);
        expect(({} as Record<string, unknown>).admin).toBeUndefined(); // the test process's prototypes are clean
      }),
      { numRuns: 1200 * RUNS },
    );
  }, 120_000);

  it('whole bodies of any JSON value', async () => {
    const arb = fc.record({ tg: target, body: fc.oneof(fc.jsonValue({ maxDepth: 4 }), fc.dictionary(fc.string(), hostileValue, { maxKeys: 6 })) });
    await fc.assert(
      fc.asyncProperty(arb, async ({ tg, body }) => {
        await send(tg, JSON.stringify(body) ?? 'null', 'application/json', `body ${JSON.stringify(body)?.slice(0, 80)}`);
      }),
      { numRuns: 1200 * RUNS },
    );
  }, 120_000);

  it('raw bodies that are not clean JSON, and good JSON under the wrong content type', async () => {
    const raw = fc.record({ tg: target, i: fc.nat() });
    await fc.assert(
      fc.asyncProperty(raw, async ({ tg, i }) => {
        const bodies = rawBodies(JSON.stringify(tg.valid()));
        const b = bodies[i % bodies.length]!;
        const a = await send(tg, b.body, 'application/json', b.what);
        // A byte-order mark may be skipped (RFC 8259 allows it); everything else is refused.
        if (!b.what.includes('BOM')) expect(a.refused, `${tg.name}: ${b.what} was accepted`).toBe(true);
      }),
      { numRuns: 600 * RUNS },
    );
    const typed = fc.record({ tg: target, type: fc.constantFrom(...CONTENT_TYPES) });
    await fc.assert(
      fc.asyncProperty(typed, async ({ tg, type }) => {
        const a = await send(tg, JSON.stringify(tg.valid()), type, `content-type ${type}`);
        // JSON has no charset parameter (RFC 8259 §11: it has no effect), so parameters of
        // application/json are ignored; any other type is refused, never guessed at.
        if (!/^application\/json\s*;/.test(type ?? '')) expect([400, 415], `${tg.name} under ${type}`).toContain(a.status);
      }),
      { numRuns: 300 * RUNS },
    );
  }, 120_000);

  it('the service is still healthy and the world unchanged by what was refused', async () => {
    expect((await t.api.get('/healthz')).status).toBe(200);
    const r = await w.ops.get(`/v1/orders/${order.id}`);
    expect(r.status).toBe(200);
    expect(tally.cases).toBeGreaterThanOrEqual(5000 * RUNS);
  });
});
