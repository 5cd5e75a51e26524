import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { listHeads, listPage, pageJson } from '../src/orders/list.js';
import { listOrdersQuery, orderSchema, stepSchema } from '../src/orders/schemas.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { ON_REAL_POSTGRES } from './helpers/env.js';
import { createWorld, type World } from './helpers/world.js';

// GET /v1/orders and GET /v1/orders.csv: every filter returns exactly the orders it should, the
// sorts order them as the contract says, and keyset pages walk every row once, even while orders
// are being created during the walk.
//
// The suites run in the order they are written (vitest runs a file's tests one after another):
// the filter and CSV suites see only the fixture below; later suites add orders of their own.

let t: TestApp;
let w: World;
beforeAll(async () => {
  // No time alerts: an alert changes an order's updatedAt, and a walk sorted by a key that changes
  // under it cannot promise every row (the contract says so); these walks test the keyset alone.
  t = await startTestApp({ ALERTS_INTERVAL_MS: '3600000' });
  w = await createWorld(t);
});
afterAll(() => t?.close());

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const iso = (ms: number) => new Date(ms).toISOString();

/** Every order this file created: id → a readable name, so that failures show names, not uuids. */
const names = new Map<string, string>();
const nameOf = (id: string) => names.get(id) ?? `unknown:${id}`;
const namesOf = (ids: Iterable<string>) => [...ids].map(nameOf);
const sortedNames = (ids: Iterable<string>) => namesOf(ids).sort();

/** GET a listing that fits in one page (≤ 200 rows); returns its items in order. */
async function list(query: string, api = w.ops): Promise<any[]> {
  const r = await api.get(`/v1/orders?limit=200${query ? `&${query}` : ''}`);
  expect(r.status, `${query}: ${r.text}`).toBe(200);
  expect(r.body.nextCursor, query).toBeNull();
  // The page is written without a response check (orders/routes.ts): hold it to the schema here,
  // with no field more or less than it documents.
  const exact = z.strictObject({ ...orderSchema.shape, route: z.array(z.strictObject(stepSchema.shape)) });
  const checked = z.array(exact).safeParse(r.body.items);
  expect(checked.error?.issues, query).toBeUndefined();
  return r.body.items;
}
const listIds = async (query: string, api = w.ops) => (await list(query, api)).map((o) => o.id as string);

/** A minimal RFC 4180 parser: quoted fields, doubled quotes, separators and newlines inside quotes. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === '') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  if (field !== '' || row.length) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

/** GET /v1/orders.csv?query: checks the content type and header; returns the rows as objects. */
async function csv(query: string): Promise<Array<Record<string, string>>> {
  const r = await w.ops.get(`/v1/orders.csv${query ? `?${query}` : ''}`);
  expect(r.status, `${query}: ${r.text}`).toBe(200);
  expect(r.headers.get('content-type')).toMatch(/^text\/csv/);
  const [header, ...rows] = parseCsv(r.text);
  expect(header, `a header line, even with no rows: ${JSON.stringify(r.text)}`).toBeDefined();
  expect(header).toEqual(expect.arrayContaining(['id', 'product', 'status', 'promisedAt', 'late', 'atRisk']));
  for (const row of rows) expect(row, `every row has one value per column: ${row.join(',')}`).toHaveLength(header!.length);
  return rows.map((row) => Object.fromEntries(header!.map((h, i) => [h, row[i]!])));
}

describe('filters of GET /v1/orders', () => {
  // The fixture: nine orders of two customers (A in DE, B in US) over three factories, in every
  // status, some late, one at risk. T is when the fixture was made.
  let T: number;
  const f: Record<string, any> = {};
  let routeFab: any[];
  let routeAsm: any[];
  let routeFabOnly: any[];

  const make = async (name: string, overrides: Record<string, unknown>) => {
    const o = await w.createOrder(overrides);
    names.set(o.id, name);
    f[name] = o;
    return o;
  };
  const forB = () => ({ customerId: w.customerB.id, engineerId: undefined });
  const id = (name: string) => f[name]!.id as string;

  beforeAll(async () => {
    T = Date.now();
    routeFab = [
      { stage: 'cam', factoryId: w.fab.id, plannedHours: 2 },
      { stage: 'drilling', factoryId: w.fab.id, plannedHours: 2 },
      { stage: 'shipping', factoryId: w.logistics.id, plannedHours: 24 },
    ];
    routeAsm = [
      { stage: 'smt', factoryId: w.assembly.id, plannedHours: 4 },
      { stage: 'shipping', factoryId: w.logistics.id, plannedHours: 24 },
    ];
    routeFabOnly = [{ stage: 'cam', factoryId: w.fab.id, plannedHours: 1 }];

    // f1: A, open, at cam, due in 5 days (28 h of work): neither late nor at risk.
    await make('f1', { product: 'Alpha 2-layer FR4', route: routeFab, promisedAt: iso(T + 5 * DAY) });
    // f2: A, on hold (material), at smt, due in 3 days.
    await make('f2', { product: 'alpha rigid-flex', route: routeAsm, promisedAt: iso(T + 3 * DAY) });
    await w.post(w.ops, id('f2'), { type: 'hold', cause: 'material', reason: 'laminate out of stock' });
    // f3: B, open, cam done and drilling running, due in 10 days.
    await make('f3', { ...forB(), product: 'Beta 6-layer', route: routeFab, promisedAt: iso(T + 10 * DAY) });
    await w.post(w.fab.api, id('f3'), { type: 'stage_completed', stage: 'cam' });
    await w.post(w.fab.api, id('f3'), { type: 'stage_started', stage: 'drilling' });
    // f4: B, open, at smt, promised 2 h ago: late. Its product has LIKE wildcards in it.
    await make('f4', { ...forB(), product: 'Gamma 50%_off panel', route: routeAsm, promisedAt: iso(T - 2 * HOUR) });
    // f5: A, cancelled; its product would be a formula in a spreadsheet.
    await make('f5', { product: '=HYPERLINK("http://evil.example","click")', route: routeFabOnly, promisedAt: iso(T + DAY) });
    await w.post(w.ops, id('f5'), { type: 'cancelled', reason: 'customer changed the design' });
    // f6: B, delivered well before its promise (in 2 days): not late.
    await make('f6', { ...forB(), product: 'Delta HDI', route: routeFab, promisedAt: iso(T + 2 * DAY) });
    await w.post(w.fab.api, id('f6'), { type: 'stage_completed', stage: 'cam' });
    await w.post(w.fab.api, id('f6'), { type: 'stage_completed', stage: 'drilling' });
    await w.post(w.logistics.api, id('f6'), { type: 'shipped', trackingNumber: 'SF0000000006' });
    await w.post(w.logistics.api, id('f6'), { type: 'delivered' });
    // f7: A, shipped, promised 1 h ago: late (not delivered), its current stage is shipping.
    await make('f7', { product: 'Epsilon flex', route: routeFab, promisedAt: iso(T - HOUR) });
    await w.post(w.fab.api, id('f7'), { type: 'stage_completed', stage: 'cam' });
    await w.post(w.fab.api, id('f7'), { type: 'stage_completed', stage: 'drilling' });
    await w.post(w.logistics.api, id('f7'), { type: 'shipped', trackingNumber: 'SF0000000007' });
    // f8: B, delivered 3 h after its promise: late for ever.
    await make('f8', { ...forB(), product: 'Zeta backplane', route: routeAsm, promisedAt: iso(T - 3 * HOUR) });
    await w.post(w.assembly.api, id('f8'), { type: 'stage_completed', stage: 'smt' });
    await w.post(w.logistics.api, id('f8'), { type: 'shipped', trackingNumber: 'SF0000000008' });
    await w.post(w.logistics.api, id('f8'), { type: 'delivered' });
    // f9: A, open, 28 h of work left and promised in 10 h: at risk, not late.
    await make('f9', { product: '+5V rail Eta', route: routeFab, promisedAt: iso(T + 10 * HOUR) });
  });

  const expectIds = async (query: string, expected: string[], api = w.ops) => {
    // Soft: one wrong filter does not hide the others of the same test.
    expect.soft(sortedNames(await listIds(query, api)), query).toEqual([...expected].sort());
  };

  it('the fixture is what the filters below assume', async () => {
    const byName = Object.fromEntries((await list('')).map((o) => [nameOf(o.id), o]));
    const facts = (n: string) => {
      const o = byName[n];
      return o && { status: o.status, late: o.late, atRisk: o.atRisk, currentStages: o.currentStages };
    };
    expect(facts('f1')).toEqual({ status: 'open', late: false, atRisk: false, currentStages: ['cam'] });
    expect(facts('f2')).toEqual({ status: 'on_hold', late: false, atRisk: false, currentStages: ['smt'] });
    expect(facts('f3')).toEqual({ status: 'open', late: false, atRisk: false, currentStages: ['drilling'] });
    expect(facts('f4')).toEqual({ status: 'open', late: true, atRisk: false, currentStages: ['smt'] });
    expect(facts('f5')).toEqual({ status: 'cancelled', late: false, atRisk: false, currentStages: [] });
    expect(facts('f6')).toEqual({ status: 'delivered', late: false, atRisk: false, currentStages: [] });
    expect(facts('f7')).toEqual({ status: 'shipped', late: true, atRisk: false, currentStages: ['shipping'] });
    expect(facts('f8')).toEqual({ status: 'delivered', late: true, atRisk: false, currentStages: [] });
    expect(facts('f9')).toEqual({ status: 'open', late: false, atRisk: true, currentStages: ['cam'] });
    expect(Object.keys(byName).sort()).toEqual(['f1', 'f2', 'f3', 'f4', 'f5', 'f6', 'f7', 'f8', 'f9']);
  });

  it('status: one status, or several separated by commas', async () => {
    await expectIds('status=open', ['f1', 'f3', 'f4', 'f9']);
    await expectIds('status=on_hold', ['f2']);
    await expectIds('status=shipped', ['f7']);
    await expectIds('status=delivered', ['f6', 'f8']);
    await expectIds('status=cancelled', ['f5']);
    await expectIds('status=open,on_hold', ['f1', 'f2', 'f3', 'f4', 'f9']);
    await expectIds('status=delivered,cancelled', ['f5', 'f6', 'f8']);
    await expectIds('status=open,on_hold,shipped,delivered,cancelled', ['f1', 'f2', 'f3', 'f4', 'f5', 'f6', 'f7', 'f8', 'f9']);
    const bad = await w.ops.get('/v1/orders?status=open,lost');
    expect(bad.status, bad.text).toBe(400);
    expect(bad.headers.get('content-type')).toContain('application/problem+json');
  });

  it('late: promise passed and not delivered, or delivered after it; with and without a status filter', async () => {
    await expectIds('late=true', ['f4', 'f7', 'f8']);
    await expectIds('late=false', ['f1', 'f2', 'f3', 'f5', 'f6', 'f9']);
    // Only unfinished statuses: the listing takes another path (the late list of ops).
    await expectIds('late=true&status=open,on_hold,shipped', ['f4', 'f7']);
    await expectIds('late=false&status=open,on_hold,shipped', ['f1', 'f2', 'f3', 'f9']);
    await expectIds('late=true&status=open', ['f4']);
    await expectIds('late=true&status=delivered', ['f8']);
    await expectIds('late=false&status=delivered', ['f6']);
    await expectIds('late=true&status=cancelled', []);
  });

  it('atRisk: not late, but projected after the promise', async () => {
    await expectIds('atRisk=true', ['f9']);
    await expectIds('atRisk=false', ['f1', 'f2', 'f3', 'f4', 'f5', 'f6', 'f7', 'f8']);
    await expectIds('atRisk=true&status=open', ['f9']);
    await expectIds('atRisk=true&late=true', []);
  });

  it('customerId and country (the customer’s)', async () => {
    await expectIds(`customerId=${w.customerA.id}`, ['f1', 'f2', 'f5', 'f7', 'f9']);
    await expectIds(`customerId=${w.customerB.id}`, ['f3', 'f4', 'f6', 'f8']);
    await expectIds('country=DE', ['f1', 'f2', 'f5', 'f7', 'f9']);
    await expectIds('country=US', ['f3', 'f4', 'f6', 'f8']);
    await expectIds('country=FR', []);
    await expectIds(`customerId=00000000-0000-4000-8000-000000000000`, []);
  });

  it('factoryId: orders routed (in any step) to the factory', async () => {
    await expectIds(`factoryId=${w.fab.id}`, ['f1', 'f3', 'f5', 'f6', 'f7', 'f9']);
    await expectIds(`factoryId=${w.assembly.id}`, ['f2', 'f4', 'f8']);
    await expectIds(`factoryId=${w.logistics.id}`, ['f1', 'f2', 'f3', 'f4', 'f6', 'f7', 'f8', 'f9']);
  });

  it('stage: orders whose current stages include it', async () => {
    await expectIds('stage=cam', ['f1', 'f9']);
    await expectIds('stage=drilling', ['f3']);
    await expectIds('stage=smt', ['f2', 'f4']);
    await expectIds('stage=shipping', ['f7']);
    await expectIds('stage=review', []);
  });

  it('promisedBefore and promisedAfter, alone and together', async () => {
    await expectIds(`promisedBefore=${iso(T + DAY + HOUR)}`, ['f4', 'f5', 'f7', 'f8', 'f9']);
    await expectIds(`promisedAfter=${iso(T + 2.5 * DAY)}`, ['f1', 'f2', 'f3']);
    await expectIds(`promisedAfter=${iso(T - 2.5 * HOUR)}&promisedBefore=${iso(T + 12 * HOUR)}`, ['f4', 'f7', 'f9']);
    await expectIds(`promisedAfter=${iso(T + 11 * DAY)}`, []);
  });

  it('product: a substring of the product, wildcards taken literally', async () => {
    await expectIds('product=-layer', ['f1', 'f3']);
    await expectIds('product=Delta', ['f6']);
    await expectIds(`product=${encodeURIComponent('50%_')}`, ['f4']);
    await expectIds(`product=${encodeURIComponent('%')}`, ['f4']);
    await expectIds('product=_', ['f4']);
    await expectIds(`product=${encodeURIComponent('=HYPERLINK(')}`, ['f5']);
    await expectIds('product=nothing-like-this', []);
  });

  it('combinations: every filter applies', async () => {
    await expectIds(`customerId=${w.customerA.id}&late=true`, ['f7']);
    await expectIds(`status=open&factoryId=${w.fab.id}`, ['f1', 'f3', 'f9']);
    await expectIds('country=US&stage=smt', ['f4']);
    await expectIds(`customerId=${w.customerB.id}&status=delivered&late=false`, ['f6']);
    await expectIds(`atRisk=true&customerId=${w.customerB.id}`, []);
    await expectIds(`factoryId=${w.assembly.id}&promisedBefore=${iso(T)}&status=open,delivered`, ['f4', 'f8']);
    await expectIds(`country=DE&product=a&status=open,on_hold&late=false&atRisk=false`, ['f1', 'f2']);
    await expectIds(`stage=cam&atRisk=true&product=Eta&country=DE&factoryId=${w.logistics.id}`, ['f9']);
  });

  it('a customer’s filters apply within its own orders only', async () => {
    await expectIds('status=delivered', [], w.customerA.api);
    await expectIds('late=true', ['f7'], w.customerA.api);
    await expectIds(`customerId=${w.customerB.id}`, [], w.customerA.api);
  });

  describe('sorts', () => {
    const fixture = () => new Set(Object.values(f).map((o) => o.id as string));
    const restricted = async (query: string) => {
      const keep = fixture();
      return namesOf((await listIds(query)).filter((i) => keep.has(i)));
    };

    it('promisedAt (the default): earliest promise first', async () => {
      const expected = ['f8', 'f4', 'f7', 'f9', 'f5', 'f6', 'f2', 'f1', 'f3'];
      expect(await restricted('sort=promisedAt')).toEqual(expected);
      expect(await restricted('')).toEqual(expected);
    });

    it('-updatedAt: the most recently changed first', async () => {
      // Touch two orders, f3 then f9: f9 is now the most recent, f3 the second.
      await w.post(w.ops, id('f3'), { type: 'note', text: 'touched first' });
      await new Promise((r) => setTimeout(r, 5));
      await w.post(w.ops, id('f9'), { type: 'note', text: 'touched second' });
      const items = await list('sort=-updatedAt');
      expect(namesOf(items.slice(0, 2).map((o) => o.id))).toEqual(['f9', 'f3']);
      const times = items.map((o) => Date.parse(o.updatedAt));
      expect(times).toEqual([...times].sort((a, b) => b - a));
    });

    it('-lateness: the latest first, then the least early; delivered orders by how late they were', async () => {
      // f8 delivered 3 h late, f4 2 h late, f7 1 h late; then f9 (due in 10 h), f6 (delivered 2 days
      // early), f2 (due in 3 days), f1 (5 days), f3 (10 days). A cancelled order has no lateness.
      const items = await list('sort=-lateness');
      const keep = fixture();
      const seq = items.filter((o) => keep.has(o.id) && o.status !== 'cancelled').map((o) => nameOf(o.id));
      expect(seq).toEqual(['f8', 'f4', 'f7', 'f9', 'f6', 'f2', 'f1', 'f3']);
      const late = items.filter((o) => o.late).map((o) => o.lateByMinutes);
      expect(late).toEqual([...late].sort((a, b) => b - a));
      // Among unfinished orders only (the late list of ops): the same order.
      expect(await restricted('sort=-lateness&status=open,on_hold,shipped')).toEqual(['f4', 'f7', 'f9', 'f2', 'f1', 'f3']);
    });
  });

  describe('GET /v1/orders.csv', () => {
    const csvIds = async (query: string) => sortedNames((await csv(query)).map((r) => r.id!));

    it('with the same filters gives a header and exactly the matching rows', async () => {
      for (const query of [
        '',
        'late=true',
        'late=true&status=open,on_hold,shipped',
        'atRisk=true',
        'status=open,on_hold',
        `customerId=${w.customerB.id}&status=delivered`,
        `factoryId=${w.assembly.id}`,
        'stage=smt',
        'country=DE',
        'product=-layer',
        `promisedAfter=${iso(T - 2.5 * HOUR)}&promisedBefore=${iso(T + 12 * HOUR)}`,
        'sort=-lateness',
      ]) {
        expect(await csvIds(query), query).toEqual(sortedNames(await listIds(query)));
      }
      expect(await csvIds('late=true')).toEqual(['f4', 'f7', 'f8']);
    });

    it('keeps the rows in the order of the sort, and the values of the JSON listing', async () => {
      const rows = await csv('sort=promisedAt&status=open,shipped,delivered');
      const items = await list('sort=promisedAt&status=open,shipped,delivered');
      expect(rows.map((r) => r.id)).toEqual(items.map((o) => o.id));
      for (const [i, o] of items.entries()) {
        const r = rows[i]!;
        expect(r.status).toBe(o.status);
        expect(r.late).toBe(String(o.late));
        expect(r.atRisk).toBe(String(o.atRisk));
        expect(Date.parse(r.promisedAt!)).toBe(Date.parse(o.promisedAt));
        expect(r.customerId).toBe(o.customerId);
      }
    });

    it('a filter that matches nothing gives the header line alone', async () => {
      const r = await w.ops.get('/v1/orders.csv?stage=review');
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toMatch(/^text\/csv/);
      const lines = r.text.split(/\r?\n/).filter((l) => l !== '');
      expect(lines, JSON.stringify(r.text)).toHaveLength(1);
      expect(lines[0]!.split(',')).toContain('id');
    });

    it('neutralises cells that a spreadsheet would run as formulas', async () => {
      const rows = await csv('');
      const product = (n: string) => rows.find((r) => r.id === id(n))?.product;
      expect(product('f5')).toBe(`'=HYPERLINK("http://evil.example","click")`);
      expect(product('f9')).toBe(`'+5V rail Eta`);
      expect(product('f1')).toBe('Alpha 2-layer FR4');
      // The JSON API keeps the product as it was given.
      expect((await w.ops.get(`/v1/orders/${id('f5')}`)).body.product).toBe('=HYPERLINK("http://evil.example","click")');
    });

    it('is for ops: a customer is refused', async () => {
      const r = await w.customerA.api.get('/v1/orders.csv');
      expect(r.status).toBe(403);
      expect(r.headers.get('content-type')).toContain('application/problem+json');
    });
  });
});

describe('-lateness among unfinished orders when the customer paused the clock', () => {
  it('ranks an order that is late above one whose earlier promise is paused by an engineering query', async () => {
    // H is promised first but waits on the customer (engineering query) since before its promise:
    // its clock is paused, so it is not late. O is promised a second later and is past its promise:
    // O is the later one, with or without a status filter.
    const now = Date.now();
    const route = [{ stage: 'cam', factoryId: w.fab.id, plannedHours: 0.0001 }];
    const h = await w.createOrder({ product: 'EQ-sort-probe H', route, promisedAt: iso(now + 2000) });
    const o = await w.createOrder({ product: 'EQ-sort-probe O', route, promisedAt: iso(now + 3000) });
    names.set(h.id, 'H (paused)');
    names.set(o.id, 'O (late)');
    await w.post(w.ops, h.id, { type: 'hold', cause: 'engineering_query', reason: 'which solder mask colour?' });
    await new Promise((r) => setTimeout(r, now + 4200 - Date.now()));

    const [hNow, oNow] = await Promise.all([w.ops.get(`/v1/orders/${h.id}`), w.ops.get(`/v1/orders/${o.id}`)]);
    expect(hNow.body.late).toBe(false);
    expect(oNow.body.late).toBe(true);
    expect(namesOf(await listIds('product=EQ-sort-probe&sort=-lateness'))).toEqual(['O (late)', 'H (paused)']);
    expect(namesOf(await listIds('product=EQ-sort-probe&sort=-lateness&status=open,on_hold'))).toEqual([
      'O (late)',
      'H (paused)',
    ]);
    expect(sortedNames(await listIds('product=EQ-sort-probe&late=true&status=open,on_hold'))).toEqual(['O (late)']);
  });
});

describe('keyset pagination', () => {
  const SORTS = ['promisedAt', '-updatedAt', '-lateness'] as const;

  beforeAll(async () => {
    // Enough orders for several pages, with ties: four share each promised date (and so each
    // lateness), and three are cancelled (which share the lateness of cancelled orders).
    const base = Date.now() + 20 * DAY;
    for (let i = 0; i < 14; i++) {
      const o = await w.createOrder({
        customerId: w.customerB.id,
        engineerId: undefined,
        product: `Bulk ${i}`,
        route: [{ stage: 'cam', factoryId: w.fab.id, plannedHours: 1 }],
        promisedAt: iso(base + (i % 4) * HOUR),
      });
      names.set(o.id, `bulk${i}`);
      if (i % 5 === 0) await w.post(w.ops, o.id, { type: 'cancelled', reason: 'duplicate' });
    }
  });

  /** Walks every page of a listing; returns the ids of each page. */
  async function walk(query: string, limit: number, between?: () => Promise<unknown>): Promise<string[][]> {
    const pages: string[][] = [];
    let cursor: string | null = null;
    do {
      const r: any = await w.ops.get(
        `/v1/orders?limit=${limit}&${query}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      );
      expect(r.status, r.text).toBe(200);
      expect(r.body.items.length).toBeLessThanOrEqual(limit);
      pages.push(r.body.items.map((o: any) => o.id));
      cursor = r.body.nextCursor;
      if (cursor) expect(r.body.items).toHaveLength(limit);
      if (cursor && between) await between();
      expect(pages.length, 'the walk ends').toBeLessThan(200);
    } while (cursor);
    return pages;
  }

  const duplicates = (ids: string[]) => namesOf(ids.filter((x, i) => ids.indexOf(x) !== i));

  for (const sort of SORTS) {
    it(`limit=3, sort=${sort}: the pages together hold every order once, in the order of one full page`, async () => {
      const all = await listIds(`sort=${sort}`);
      expect(all.length).toBeGreaterThanOrEqual(20);
      expect(sortedNames(all)).toEqual(sortedNames(names.keys()));
      const pages = await walk(`sort=${sort}`, 3);
      const walked = pages.flat();
      expect(duplicates(walked)).toEqual([]);
      expect(namesOf(walked)).toEqual(namesOf(all));
      expect(pages.length).toBe(Math.ceil(all.length / 3));
    });
  }

  it('limit=3, sort=-lateness among unfinished orders (read by due date): every order once', async () => {
    const query = 'sort=-lateness&status=open,on_hold,shipped';
    const all = await listIds(query);
    const walked = (await walk(query, 3)).flat();
    expect(duplicates(walked)).toEqual([]);
    expect(namesOf(walked)).toEqual(namesOf(all));
  });

  it('limit=2 with filters: the filters hold on every page', async () => {
    const query = `sort=promisedAt&customerId=${w.customerB.id}&status=open`;
    const all = await listIds(query);
    expect(all.length).toBeGreaterThan(4);
    expect(namesOf((await walk(query, 2)).flat())).toEqual(namesOf(all));
  });

  for (const sort of [...SORTS, '-lateness&status=open,on_hold,shipped'] as const) {
    it(`limit=3, sort=${sort}, while orders are created during the walk: each earlier order exactly once, none twice`, async () => {
      const before = new Set(await listIds(`sort=${sort}`));
      const created: string[] = [];
      let stop = false;
      let n = 0;
      const create = async () => {
        const i = n++;
        // Promised anywhere from a day ago to a month ahead: some land behind the walk, some ahead.
        const o = await w.createOrder({
          product: `Concurrent ${sort} ${i}`,
          route: [{ stage: 'cam', factoryId: w.fab.id, plannedHours: 1 }],
          promisedAt: iso(Date.now() - DAY + ((i * 7919) % 31) * DAY),
        });
        names.set(o.id, `new-${sort}-${i}`);
        created.push(o.id);
      };
      // A writer that runs alongside the walk, plus one creation between every two pages.
      const writer = (async () => {
        for (let k = 0; k < 12 && !stop; k++) {
          await create();
          await new Promise((r) => setTimeout(r, 40));
        }
      })();
      let pages: string[][];
      try {
        pages = await walk(`sort=${sort}`, 3, create);
      } finally {
        stop = true;
        await writer;
      }
      const walked = pages.flat();
      expect(created.length).toBeGreaterThanOrEqual(pages.length - 1);
      expect(duplicates(walked), 'no order twice').toEqual([]);
      const missing = [...before].filter((x) => !walked.includes(x));
      expect(namesOf(missing), 'every order that existed before the walk').toEqual([]);
      const strangers = walked.filter((x) => !before.has(x) && !created.includes(x));
      expect(namesOf(strangers)).toEqual([]);
    });
  }

  it('a cursor is refused (400) by another sort, by changed filters, and when garbled', async () => {
    const first = async (query: string) => {
      const r = await w.ops.get(`/v1/orders?limit=3&${query}`);
      expect(r.status).toBe(200);
      expect(r.body.nextCursor).toEqual(expect.any(String));
      return encodeURIComponent(r.body.nextCursor);
    };
    const refused = async (query: string) => {
      const r = await w.ops.get(`/v1/orders?limit=3&${query}`);
      expect(r.status, `${query}: ${r.text}`).toBe(400);
      expect(r.headers.get('content-type')).toContain('application/problem+json');
      expect(JSON.stringify(r.body.errors ?? r.body.detail)).toContain('cursor');
    };
    const byPromise = await first('sort=promisedAt');
    const byUpdate = await first('sort=-updatedAt');
    const byLateness = await first('sort=-lateness');
    const byDue = await first('sort=-lateness&status=open');
    await refused(`sort=-updatedAt&cursor=${byPromise}`);
    await refused(`sort=-lateness&cursor=${byPromise}`);
    await refused(`cursor=${byUpdate}`); // the default sort is promisedAt
    await refused(`sort=promisedAt&cursor=${byLateness}`);
    await refused(`sort=-lateness&status=open&cursor=${byLateness}`);
    await refused(`sort=-lateness&cursor=${byDue}`);
    await refused('cursor=not-a-cursor');
    await refused(`cursor=${Buffer.from('{"s":"promisedAt"}').toString('base64url')}`);
    // …and the right sort takes it.
    expect((await w.ops.get(`/v1/orders?limit=3&sort=promisedAt&cursor=${byPromise}`)).status).toBe(200);
  });
});

describe('boolean filters', () => {
  it('each splits every order in two: =true and =false are disjoint and together hold every order', async () => {
    // By now the orders include every status, late and not, at risk, in a stage and between stages.
    // Add one that waits on the customer (engineering query) well before its promise.
    const held = await w.createOrder({ product: 'EQ-held, due in 5 days', promisedAt: iso(Date.now() + 5 * DAY) });
    names.set(held.id, 'EQ-held');
    await w.post(w.ops, held.id, { type: 'hold', cause: 'engineering_query', reason: 'drill file missing' });
    const all = await listIds('');
    for (const flag of ['late', 'atRisk', 'overrun', 'lateStart', 'silent']) {
      const yes = await listIds(`${flag}=true`);
      const no = await listIds(`${flag}=false`);
      expect(
        yes.filter((x) => no.includes(x)),
        `${flag}: in both`,
      ).toEqual([]);
      const neither = all.filter((x) => !yes.includes(x) && !no.includes(x));
      expect.soft(namesOf(neither), `${flag}: orders in neither ${flag}=true nor ${flag}=false`).toEqual([]);
    }
  });
});

describe('a page writes each order as reading it alone does', () => {
  // A page's routes are written by Postgres (orders/repository.ts routesJson), an order read alone
  // by the service (toOrder): both must give the same fields, values and instants.
  it('every order of a page equals GET /v1/orders/:id, route and all', async () => {
    const route = [
      { stage: 'cam', factoryId: w.fab.id, plannedHours: 0.1 },
      { stage: 'drilling', factoryId: w.fab.id, plannedHours: 1.25 },
      { stage: 'plating', factoryId: w.fab.id, plannedHours: 3 },
      { stage: 'smt', factoryId: w.assembly.id, plannedHours: 7.3, after: ['drilling', 'plating'] },
    ];
    // A product beyond ASCII: the page is written in bytes, each order cut before its closing brace.
    const o = await w.createOrder({ product: 'Theta page-vs-alone, 四层板 für Müller', externalRef: 'θ-1', route, promisedAt: iso(Date.now() + 3 * DAY) });
    names.set(o.id, 'theta');
    await w.post(w.fab.api, o.id, { type: 'stage_started', stage: 'cam' });
    await w.post(w.fab.api, o.id, { type: 'stage_completed', stage: 'cam' });
    await w.post(w.fab.api, o.id, { type: 'stage_progress', stage: 'drilling', progress: 37 });
    const page = await list('sort=-updatedAt');
    expect(page.map((x) => nameOf(x.id))).toContain('theta');
    for (const item of page) {
      const alone = await w.ops.get(`/v1/orders/${item.id}`);
      expect(alone.status).toBe(200);
      // The page judges late and at risk at its own instant, a moment earlier than the read alone.
      const timeless = ({ late: _l, atRisk: _a, lateByMinutes: _m, overrun: _o, lateStart: _s, projectedAt: _p, ...rest }: any) => rest;
      expect(timeless(item), nameOf(item.id)).toEqual(timeless(alone.body));
    }
    const theta = page.find((x) => x.id === o.id);
    expect(theta.route.map((s: any) => [s.stage, s.plannedHours, s.status, s.progress, s.after])).toEqual([
      ['cam', 0.1, 'done', 100, []],
      ['drilling', 1.25, 'in_progress', 37, ['cam']],
      ['plating', 3, 'pending', 0, ['drilling']],
      ['smt', 7.3, 'pending', 0, ['drilling', 'plating']],
    ]);
    expect(Date.parse(theta.route[0].completedAt)).toBeGreaterThan(0);
    expect(theta.route[0].completedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });
  it("a page's flags and projection equal the orders read as rows, at any instant", async () => {
    // A JSON page reads its orders' instants as numbers and its fixed fields as JSON written by
    // Postgres (orders/list.ts pageQuery); the CSV export reads rows and builds each order as a
    // read alone does (orderHead). Asked at the same instants, before, at and past every promise
    // of this file's orders, the two must agree on every order, flag and projection included.
    const ops = { role: 'ops', sub: 'test', expiresAt: new Date(Date.now() + DAY) } as const;
    const shapes = ['sort=-lateness', 'late=true&sort=-lateness', 'atRisk=true&sort=promisedAt', 'sort=-updatedAt', 'status=on_hold,delivered,cancelled'];
    let compared = 0;
    const flagsSeen = new Set<string>();
    for (const offset of [-2 * DAY, 0, 2 * DAY, 5 * DAY, 30 * DAY]) {
      const at = new Date(Date.now() + offset);
      for (const shape of shapes) {
        const q = listOrdersQuery.parse({ ...Object.fromEntries(new URLSearchParams(shape)), limit: '7' });
        const rows = await listHeads(t.database.db, ops, q, at);
        const page = JSON.parse(pageJson(await listPage(t.database.db, ops, q, at)).toString());
        expect(page.nextCursor, shape).toBe(rows.nextCursor);
        expect(page.items.map(({ route: _r, ...head }: any) => head), `${shape} at ${at.toISOString()}`).toEqual(rows.heads);
        for (const h of rows.heads) {
          for (const flag of ['late', 'atRisk', 'overrun', 'lateStart'] as const) if (h[flag]) flagsSeen.add(flag);
          flagsSeen.add(h.projectedAt === null ? 'no projection' : 'projected');
        }
        compared += rows.heads.length;
      }
    }
    expect(compared).toBeGreaterThan(100);
    expect([...flagsSeen].sort()).toEqual(['atRisk', 'late', 'lateStart', 'no projection', 'overrun', 'projected']);
  });
  it("a page's routes follow each write to them, though the service keeps the routes it listed", async () => {
    // Lists keep routes by their order's seq (orders/route-cache.ts): a kept route must never be
    // served for an order written since, from this instance or any other.
    const o = await w.createOrder({ product: 'Iota kept route', promisedAt: iso(Date.now() + 4 * DAY) });
    names.set(o.id, 'iota');
    const routeOf = async () => (await list('sort=-updatedAt')).find((x) => x.id === o.id).route[0];
    expect((await routeOf()).status).toBe('pending');
    await routeOf(); // served from the kept routes now
    await w.post(w.fab.api, o.id, { type: 'stage_started', stage: o.route[0].stage });
    expect((await routeOf()).status).toBe('in_progress');
    await w.post(w.fab.api, o.id, { type: 'stage_progress', stage: o.route[0].stage, progress: 42 });
    expect((await routeOf()).progress).toBe(42);
    // Written behind the service's back, without an event: a seq that did not move keeps the
    // route as listed (the contract of every writer: events/repository.ts), one that moved does not.
    await sql`update order_steps set progress = 43 where order_id = ${o.id} and position = 0`.execute(t.database.db);
    expect((await routeOf()).progress).toBe(42);
    await sql`update orders set last_seq = last_seq + 1 where id = ${o.id}`.execute(t.database.db);
    expect((await routeOf()).progress).toBe(43);
  });
});

describe('a column added while the service runs (a rolling deploy)', () => {
  // Lists and their steps run as prepared statements on a real Postgres (orders/list.ts): a column
  // added under them makes Postgres refuse the `select *` a connection kept. They must go on
  // answering, before, during and after.
  // Planned for their values (by promise date), and with their generic plan (the late list, worst first).
  it.each(['sort=promisedAt', 'late=true&sort=-lateness'])('lists go on answering, with the same orders (%s)', async (query) => {
    const before = (await list(query)).map((o) => o.id);
    for (let i = 0; i < 3; i++) await list(query); // every connection the pool reuses has prepared them
    await sql`alter table order_steps add column deploy_probe int`.execute(t.database.db);
    await sql`alter table orders add column deploy_probe int`.execute(t.database.db);
    try {
      for (let i = 0; i < 4; i++) expect((await list(query)).map((o) => o.id)).toEqual(before);
    } finally {
      await sql`alter table order_steps drop column deploy_probe`.execute(t.database.db);
      await sql`alter table orders drop column deploy_probe`.execute(t.database.db);
    }
    expect((await list(query)).map((o) => o.id)).toEqual(before);
  });
});

describe.runIf(ON_REAL_POSTGRES)('which connections a list runs on (real Postgres)', () => {
  // The merged listings without a value to narrow them run on connections that always use the
  // generic plan (orders/list.ts valueScoped; query-plans.test.ts checks those plans); the rest
  // on the query pool, planned for their values.
  const fixedPlanConnections = async (app: TestApp) => {
    const m = await app.api.get('/metrics');
    return Number(/orderstream_db_pool_connections\{pool="fixed_plans",state="total"\} (\d+)/.exec(m.text)?.[1]);
  };

  it("a customer's late list and ops' list by promise date open none of the fixed-plan connections; ops' late list does", async () => {
    const fresh = await startTestApp({ ALERTS_INTERVAL_MS: '3600000' });
    try {
      const mine = fresh.api.as(await fresh.token({ role: 'customer', customerId: w.customerA.id }));
      const ops = fresh.api.as(await fresh.token({ role: 'ops' }));
      expect((await mine.get('/v1/orders?late=true&sort=-lateness')).status).toBe(200);
      expect((await ops.get('/v1/orders?sort=promisedAt')).status).toBe(200);
      expect(await fixedPlanConnections(fresh)).toBe(0);
      expect((await ops.get('/v1/orders?late=true&sort=-lateness')).status).toBe(200);
      expect(await fixedPlanConnections(fresh)).toBe(1);
    } finally {
      await fresh.close();
    }
    expect(await fixedPlanConnections(t)).toBeGreaterThanOrEqual(1); // this file's late lists above
  });
});
