import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from './helpers/app.js';
import { createWorld, type World } from './helpers/world.js';

// An engineering query waits on the customer: it pauses the promise clock and is not the
// factory's lateness. Other holds (material, equipment) do not pause it.

let t: TestApp;
let w: World;
beforeAll(async () => {
  t = await startTestApp();
  w = await createWorld(t);
});
afterAll(() => t?.close());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const order = (id: string) => w.ops.get(`/v1/orders/${id}`).then((r) => r.body);
const lateIds = async () => (await w.ops.get('/v1/orders?late=true&status=open,on_hold,shipped&limit=200')).body.items.map((o: any) => o.id);

async function quickOrder(secondsToPromise: number) {
  return w.createOrder({
    promisedAt: new Date(Date.now() + secondsToPromise * 1000).toISOString(),
    route: [{ stage: 'packing', factoryId: w.fab.id, plannedHours: 0.0001 }],
  });
}

describe('holds and the promise clock', () => {
  it("pauses the clock while the customer holds the order, and moves the due date by the hold's length", async () => {
    const eq = await quickOrder(2);
    const material = await quickOrder(2);
    await w.post(w.ops, eq.id, { type: 'hold', cause: 'engineering_query', reason: 'which solder mask colour?' });
    await w.post(w.ops, material.id, { type: 'hold', cause: 'material', reason: 'laminate shortage' });
    await sleep(3000);
    const [eqNow, materialNow] = await Promise.all([order(eq.id), order(material.id)]);
    expect(eqNow.late).toBe(false);
    expect(eqNow.atRisk).toBe(false);
    expect(materialNow.late).toBe(true);
    const late = await lateIds();
    expect(late).toContain(material.id);
    expect(late).not.toContain(eq.id);

    const heldFor = Date.now() - Date.parse(eqNow.updatedAt);
    const resumed = await w.post(w.ops, eq.id, { type: 'resumed', reason: 'customer answered' });
    const after = await order(eq.id);
    const moved = Date.parse(after.dueAt) - Date.parse(after.promisedAt);
    expect(moved).toBeGreaterThanOrEqual(heldFor - 200);
    expect(moved).toBeLessThanOrEqual(Date.parse(resumed.occurredAt) - Date.parse(eqNow.updatedAt) + 5);
    expect(after.promisedAt).toBe(eq.promisedAt);
    expect(after.late).toBe(false);
  });

  it('counts a delivery after the promise but within the moved due date as on time', async () => {
    const o = await quickOrder(2);
    await w.post(w.ops, o.id, { type: 'hold', cause: 'engineering_query', reason: 'impedance question' });
    await sleep(3000);
    await w.post(w.ops, o.id, { type: 'resumed' });
    await w.post(w.fab.api, o.id, { type: 'stage_completed', stage: 'packing' });
    await w.post(w.fab.api, o.id, { type: 'shipped', trackingNumber: 'SF1' });
    await w.post(w.fab.api, o.id, { type: 'delivered' });
    const done = await order(o.id);
    expect(Date.parse(done.projectedAt)).toBeGreaterThan(Date.parse(done.promisedAt)); // delivered after the promise
    expect(done.late).toBe(false); // but not late: the customer's wait is not counted
    const summary = (await w.ops.get('/v1/ops/summary?window=1h')).body;
    expect(summary.delivered.count).toBe(1);
    expect(summary.delivered.onTime).toBe(1);
  });

  it('lists an order at risk by promise date when a hold moved its due date past a promise already passed', async () => {
    // The at-risk list by promise date reads such orders apart from the others (orders/list.ts).
    const o = await w.createOrder({
      promisedAt: new Date(Date.now() + 3000).toISOString(),
      route: [{ stage: 'packing', factoryId: w.fab.id, plannedHours: 1 }],
    });
    await w.post(w.ops, o.id, { type: 'hold', cause: 'engineering_query', reason: 'panel drawing' });
    await sleep(5000);
    await w.post(w.ops, o.id, { type: 'resumed' });
    const now = Date.now();
    const after = await order(o.id);
    expect(Date.parse(after.promisedAt)).toBeLessThan(now);
    expect(Date.parse(after.dueAt)).toBeGreaterThan(now);
    expect(after.atRisk).toBe(true);
    const byPromise = (await w.ops.get('/v1/orders?atRisk=true&sort=promisedAt&limit=200')).body.items.map((x: any) => x.id);
    const worstFirst = (await w.ops.get('/v1/orders?atRisk=true&sort=-lateness&limit=200')).body.items.map((x: any) => x.id);
    expect(byPromise).toContain(o.id);
    expect([...byPromise].sort()).toEqual([...worstFirst].sort());
    // Walked a page of one at a time, the same orders in the same order.
    const walked: string[] = [];
    let cursor: string | null = null;
    do {
      const page: any = (await w.ops.get(`/v1/orders?atRisk=true&sort=promisedAt&limit=1${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)).body;
      walked.push(...page.items.map((x: any) => x.id));
      cursor = page.nextCursor;
    } while (cursor);
    expect(walked).toEqual(byPromise);
  });
});
