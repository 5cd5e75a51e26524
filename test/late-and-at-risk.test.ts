import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from './helpers/app.js';
import { createWorld, type World } from './helpers/world.js';

// Late and at risk change with time alone: no event is posted while we wait and no job runs (the
// alert job is set to run once an hour), yet an order becomes at risk when its remaining work no
// longer fits before its promise, and late when the promise passes. The orders of every test here
// are created at once and watched concurrently, so the file takes about as long as its longest wait.
//
// The projection is max(now + lead, floor) with the lead rounded up to whole minutes: an order
// with 45 s of pending work has a lead of 1 minute and is at risk from one minute before its promise.

let t: TestApp;
let w: World;
beforeAll(async () => {
  t = await startTestApp({ ALERTS_INTERVAL_MS: String(3_600_000) });
  w = await createWorld(t);
});
afterAll(() => t?.close());

const SECOND = 1000;
const iso = (ms: number) => new Date(ms).toISOString();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const route = (hours: number) => [{ stage: 'cam', factoryId: w.fab.id, plannedHours: hours }];
const shippableRoute = () => [
  { stage: 'cam', factoryId: w.fab.id, plannedHours: 0.0001 },
  { stage: 'shipping', factoryId: w.logistics.id, plannedHours: 0.0001 },
];

async function get(id: string): Promise<any> {
  const r = await w.ops.get(`/v1/orders/${id}`);
  expect(r.status, r.text).toBe(200);
  return r.body;
}

/** Ids of GET /v1/orders?query (one page is enough here). */
async function listed(query: string): Promise<string[]> {
  const r = await w.ops.get(`/v1/orders?limit=200&${query}`);
  expect(r.status, r.text).toBe(200);
  return r.body.items.map((o: any) => o.id);
}

/** The flags agree with the projection: not late, at risk ⇔ projected after the due date. */
function consistent(o: any) {
  expect(o.late && o.atRisk, 'late and at risk at once').toBe(false);
  if (o.late) expect(o.lateByMinutes).toBeGreaterThanOrEqual(0);
  else expect(o.lateByMinutes).toBe(0);
  if (!o.late && o.projectedAt && ['open', 'shipped'].includes(o.status)) {
    expect(o.atRisk, `atRisk vs projectedAt ${o.projectedAt} and dueAt ${o.dueAt}`).toBe(
      Date.parse(o.projectedAt) > Date.parse(o.dueAt),
    );
  }
}

/**
 * Polls GET /v1/orders/:id every 250 ms until `until` holds, up to `timeoutMs`; checks every reply
 * with `each` (given the time just before the request). Returns the reply that satisfied `until`
 * and the time just before it was asked for.
 */
async function poll(
  id: string,
  until: (o: any) => boolean,
  each: (o: any, askedAt: number) => void = () => undefined,
  timeoutMs = 15 * SECOND,
): Promise<{ order: any; askedAt: number }> {
  const deadline = Date.now() + timeoutMs;
  let last: any;
  for (;;) {
    const askedAt = Date.now();
    last = await get(id);
    consistent(last);
    each(last, askedAt);
    if (until(last)) return { order: last, askedAt };
    if (Date.now() > deadline) throw new Error(`not reached in ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
    await sleep(250);
  }
}

describe.concurrent('with no event and no job', () => {
  it('an order becomes late when its promise passes', async () => {
    const promised = Date.now() + 3 * SECOND;
    const o = await w.createOrder({ product: 'late by time', route: route(0.0001), promisedAt: iso(promised) });
    const first = await get(o.id);
    expect(first.late).toBe(false);
    expect(first.lateByMinutes).toBe(0);
    expect(await listed('late=true')).not.toContain(o.id);
    expect(await listed('late=true&status=open')).not.toContain(o.id);

    const { order } = await poll(
      o.id,
      (x) => x.late,
      (x, askedAt) => {
        // Never late before the promise; always late once it passed (allow the request's own time).
        const answeredBy = Date.now();
        if (x.late) expect(answeredBy).toBeGreaterThan(promised);
        if (askedAt > promised) expect(x.late).toBe(true);
      },
    );
    expect(order.late).toBe(true);
    expect(order.lateByMinutes).toBeGreaterThanOrEqual(0);
    expect(order.atRisk).toBe(false);
    expect(order.status).toBe('open');
    expect(order.lastSeq, 'no event was recorded').toBe(1);
    expect(await listed('late=true')).toContain(o.id);
    expect(await listed('late=true&status=open,on_hold,shipped')).toContain(o.id);
    expect(await listed('late=false')).not.toContain(o.id);
    expect(await listed('atRisk=true')).not.toContain(o.id);
    expect(await listed('sort=-lateness&status=open')).toContain(o.id);
  });

  it('an order becomes at risk when its remaining work no longer fits before the promise', async () => {
    // 45 s of pending work: a lead of 1 minute; promised in 70 s, so at risk from about 10 s on.
    const created = Date.now();
    const promised = created + 70 * SECOND;
    const o = await w.createOrder({ product: 'at risk by time', route: route(0.0125), promisedAt: iso(promised) });
    const first = await get(o.id);
    expect(first.atRisk).toBe(false);
    expect(first.late).toBe(false);
    expect(Date.parse(first.projectedAt)).toBeLessThanOrEqual(promised);
    expect(await listed('atRisk=true')).not.toContain(o.id);
    expect(await listed('atRisk=false')).toContain(o.id);

    const { order, askedAt } = await poll(
      o.id,
      (x) => x.atRisk,
      (x, asked) => {
        expect(x.late).toBe(false);
        // Not at risk while now + lead is still before the promise.
        if (Date.now() + 60 * SECOND < promised) expect(x.atRisk).toBe(false);
        if (asked + 60 * SECOND > promised) expect(x.atRisk).toBe(true);
      },
      20 * SECOND,
    );
    expect(order.atRisk).toBe(true);
    expect(order.late).toBe(false);
    expect(Date.parse(order.projectedAt)).toBeGreaterThan(promised);
    expect(askedAt - created).toBeLessThan(15 * SECOND);
    expect(order.lastSeq, 'no event was recorded').toBe(1);
    expect(await listed('atRisk=true')).toContain(o.id);
    expect(await listed('atRisk=true&status=open')).toContain(o.id);
    expect(await listed('atRisk=false')).not.toContain(o.id);
    expect(await listed('late=true')).not.toContain(o.id);
  });

  it('an at-risk order is no longer at risk once it is late: it is late', async () => {
    // 45 s of work and promised in 8 s: at risk from the start (projected after the promise), late after 8 s.
    const promised = Date.now() + 8 * SECOND;
    const o = await w.createOrder({ product: 'at risk, then late', route: route(0.0125), promisedAt: iso(promised) });
    const first = await get(o.id);
    expect(first.atRisk).toBe(true);
    expect(first.late).toBe(false);
    expect(await listed('atRisk=true')).toContain(o.id);
    expect(await listed('late=true')).not.toContain(o.id);

    const { order } = await poll(o.id, (x) => x.late);
    expect(order.late).toBe(true);
    expect(order.atRisk).toBe(false);
    expect(order.lateByMinutes).toBeGreaterThanOrEqual(0);
    expect(order.lastSeq, 'no event was recorded').toBe(1);
    expect(await listed('atRisk=true')).not.toContain(o.id);
    expect(await listed('atRisk=true&status=open')).not.toContain(o.id);
    expect(await listed('atRisk=false')).toContain(o.id);
    expect(await listed('late=true')).toContain(o.id);
  });

  it('an order delivered after its promise is late for ever (delivered late)', async () => {
    const promised = Date.now() + 2 * SECOND;
    const o = await w.createOrder({ product: 'delivered late', route: shippableRoute(), promisedAt: iso(promised) });
    await w.post(w.fab.api, o.id, { type: 'stage_completed', stage: 'cam' });
    await w.post(w.logistics.api, o.id, { type: 'shipped', trackingNumber: 'DHL-LATE-1' });
    // In transit when the promise passes: late.
    await poll(o.id, (x) => x.late);
    expect(await listed('late=true&status=shipped')).toContain(o.id);
    await w.post(w.logistics.api, o.id, { type: 'delivered' });
    const delivered = await get(o.id);
    expect(delivered.status).toBe('delivered');
    expect(delivered.late).toBe(true);
    expect(delivered.atRisk).toBe(false);
    expect(delivered.lateByMinutes).toBeGreaterThanOrEqual(0);
    await sleep(1500);
    const later = await get(o.id);
    expect(later.late).toBe(true);
    expect(later.lateByMinutes).toBe(delivered.lateByMinutes);
    expect(await listed('late=true')).toContain(o.id);
    expect(await listed('late=true&status=delivered')).toContain(o.id);
    expect(await listed('late=false')).not.toContain(o.id);
  });

  it('an order delivered before its promise stays on time after the promise passes', async () => {
    const promised = Date.now() + 3 * SECOND;
    const o = await w.createOrder({ product: 'delivered on time', route: shippableRoute(), promisedAt: iso(promised) });
    await w.post(w.fab.api, o.id, { type: 'stage_completed', stage: 'cam' });
    await w.post(w.logistics.api, o.id, { type: 'shipped', trackingNumber: 'DHL-ONTIME-1' });
    await w.post(w.logistics.api, o.id, { type: 'delivered' });
    expect(Date.now()).toBeLessThan(promised);
    expect((await get(o.id)).late).toBe(false);
    await sleep(promised + 1000 - Date.now());
    const after = await get(o.id);
    expect(after.status).toBe('delivered');
    expect(after.late).toBe(false);
    expect(after.atRisk).toBe(false);
    expect(after.lateByMinutes).toBe(0);
    expect(await listed('late=true')).not.toContain(o.id);
    expect(await listed('late=true&status=delivered')).not.toContain(o.id);
    expect(await listed('late=false&status=delivered')).toContain(o.id);
    expect(await listed('late=false')).toContain(o.id);
  });

  it('a cancelled order is never late nor at risk, before or after its promise', async () => {
    // One that would be at risk (45 s of work, promised in 2 s), one already past its promise.
    const promised = Date.now() + 2 * SECOND;
    const soon = await w.createOrder({ product: 'cancelled, would be at risk', route: route(0.0125), promisedAt: iso(promised) });
    const overdue = await w.createOrder({
      product: 'cancelled, was late',
      route: route(0.0125),
      promisedAt: iso(Date.now() - 3600 * SECOND),
    });
    expect((await get(soon.id)).atRisk).toBe(true);
    expect((await get(overdue.id)).late).toBe(true);
    for (const o of [soon, overdue]) await w.post(w.ops, o.id, { type: 'cancelled', reason: 'no longer needed' });
    const check = async () => {
      for (const o of [soon, overdue]) {
        const x = await get(o.id);
        expect(x.status).toBe('cancelled');
        expect([x.late, x.atRisk, x.lateByMinutes]).toEqual([false, false, 0]);
      }
      const late = await listed('late=true');
      const atRisk = await listed('atRisk=true');
      for (const o of [soon, overdue]) {
        expect(late).not.toContain(o.id);
        expect(atRisk).not.toContain(o.id);
      }
    };
    await check();
    await sleep(promised + 1000 - Date.now());
    await check();
  });
});
