import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from './helpers/app.js';
import { createWorld, type World } from './helpers/world.js';

let t: TestApp;
let w: World;
beforeAll(async () => {
  t = await startTestApp();
  w = await createWorld(t);
});
afterAll(() => t?.close());

describe('an order from creation to delivery', () => {
  it('plans the route along its dependencies and records the created event', async () => {
    const order = await w.createOrder();
    expect(order.status).toBe('open');
    expect(order.lastSeq).toBe(1);
    expect(order.currentStages).toEqual(['review', 'components']);
    const byStage = Object.fromEntries(order.route.map((s: any) => [s.stage, s]));
    // smt waits for drilling (3.5 h in) and components (24 h in): it starts at +24 h.
    const created = Date.parse(order.createdAt);
    expect(Date.parse(byStage.smt.plannedStart) - created).toBe(24 * 3600_000);
    expect(Date.parse(byStage.shipping.plannedEnd) - created).toBe(52 * 3600_000);
    expect(Date.parse(order.projectedAt) - Date.now()).toBeGreaterThan(51.9 * 3600_000);
    const events = await w.ops.get(`/v1/orders/${order.id}/events`);
    expect(events.body.items.map((e: any) => [e.seq, e.type])).toEqual([[1, 'created']]);
  });

  it('walks every stage, ships and delivers, keeping a gapless seq', async () => {
    const o = await w.createOrder();
    await w.post(w.fab.api, o.id, { type: 'stage_started', stage: 'review' });
    await w.post(w.fab.api, o.id, { type: 'stage_completed', stage: 'review' });
    await w.post(w.fab.api, o.id, { type: 'stage_progress', stage: 'cam', progress: 40 });
    await w.post(w.fab.api, o.id, { type: 'stage_completed', stage: 'cam' });
    await w.post(w.fab.api, o.id, { type: 'stage_completed', stage: 'drilling' });
    await w.post(w.assembly.api, o.id, { type: 'stage_completed', stage: 'components', quantityGood: 50 });
    await w.post(w.assembly.api, o.id, { type: 'stage_completed', stage: 'smt', quantityGood: 49, quantityScrap: 1 });
    const shipped = await w.post(w.logistics.api, o.id, { type: 'shipped', trackingNumber: 'SF123456789CN', carrier: 'SF Express' });
    expect(shipped.stage).toBe('shipping');
    await w.post(w.logistics.api, o.id, { type: 'delivered' });
    const final = (await w.ops.get(`/v1/orders/${o.id}`)).body;
    expect(final.status).toBe('delivered');
    expect(final.progress).toBe(100);
    expect(final.late).toBe(false);
    expect(final.route.every((s: any) => s.status === 'done')).toBe(true);
    const events = (await w.ops.get(`/v1/orders/${o.id}/events?limit=100`)).body.items;
    expect(events.map((e: any) => e.seq)).toEqual([...Array(events.length).keys()].map((i) => i + 1));
    expect(events.map((e: any) => e.cursor)).toEqual([...events.map((e: any) => e.cursor)].sort());
    // nothing after delivered
    await w.post(w.ops, o.id, { type: 'note', text: 'late remark' }, 409);
  });
});
