// The KPIs of /v1/ops/summary against figures worked out by hand on a small fixed network, and
// the maintained rollups against a recount: whatever the fold job has or has not folded yet,
// the summary is the same as one counted again from the orders.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { foldFacts, rebuildRollups } from '../src/ops/rollups.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { createWorld, type World } from './helpers/world.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
let t: TestApp;
let w: World;
const now = Date.now();
const at = (offsetMs: number) => new Date(now + offsetMs);
const ids = { c1: randomUUID(), c2: randomUUID(), f1: randomUUID(), f2: randomUUID() };

/** Inserts one order of the fixture with its steps; unset columns take the defaults of an open order. */
async function order(o: Record<string, unknown>, steps: Array<Record<string, unknown>> = []) {
  const id = randomUUID();
  const created = (o.created_at as Date) ?? at(-DAY);
  await t.database.db
    .insertInto('orders')
    .values({
      id,
      customer_id: ids.c1,
      customer_country: 'DE',
      product: 'fixture',
      quantity: 1,
      status: 'open',
      promised_at: at(5 * DAY),
      due_at: at(5 * DAY),
      last_event_at: at(-HOUR),
      created_at: created,
      updated_at: created,
      ...o,
    } as never)
    .execute();
  for (const [position, s] of steps.entries()) {
    await t.database.db
      .insertInto('order_steps')
      .values({ order_id: id, position, after: [], planned_start: created, planned_end: created, status: 'done', ...s } as never)
      .execute();
  }
  return id;
}

/** A completed step: finished `endAgo` ago after `dwellHours`, planned for `planned` hours. */
const done = (stage: string, factory_id: string, endAgo: number, dwellHours: number, planned: number) => ({
  stage,
  factory_id,
  planned_hours: planned,
  started_at: at(-endAgo - dwellHours * HOUR),
  completed_at: at(-endAgo),
  status: 'done',
  progress: 100,
});
const running = (stage: string, factory_id: string) => ({ stage, factory_id, planned_hours: 2, started_at: at(-HOUR), status: 'in_progress', progress: 10 });

async function summary(window = '7d') {
  const r = await w.ops.get(`/v1/ops/summary?window=${window}`);
  expect(r.status, r.text).toBe(200);
  return r.body;
}

beforeAll(async () => {
  t = await startTestApp();
  w = await createWorld(t);
  const db = t.database.db;
  await db.insertInto('customers').values([{ id: ids.c1, name: 'Fixture DE', country: 'DE' }, { id: ids.c2, name: 'Fixture US', country: 'US' }]).execute();
  await db
    .insertInto('factories')
    .values([
      { id: ids.f1, name: 'Fixture fab', kind: 'fabrication', country: 'CN' },
      { id: ids.f2, name: 'Fixture SMT', kind: 'assembly', country: 'VN' },
    ])
    .execute();
  // Delivered: late after 240 h, on time after 120 h, and one long before the window.
  await order({ status: 'delivered', created_at: at(-12 * DAY), delivered_at: at(-2 * DAY), due_at: at(-3 * DAY), promised_at: at(-3 * DAY) }, [
    done('cam', ids.f1, 2 * DAY, 3, 2), // 1 h over plan
    done('smt', ids.f2, 20 * DAY, 10, 4), // 6 h over plan, outside 7 days
  ]);
  await order({ status: 'delivered', created_at: at(-6 * DAY), delivered_at: at(-DAY), due_at: at(DAY) }, [
    done('drilling', ids.f1, DAY, 1.5, 2),
    done('smt', ids.f2, 3 * DAY, 4, 4), // exactly on plan: on time
  ]);
  await order({ status: 'delivered', created_at: at(-50 * DAY), delivered_at: at(-40 * DAY), due_at: at(-39 * DAY) }); // on time
  // Unfinished: open and fine but starting late; open, late, silent, overrunning; waiting on the
  // customer since before its due date (paused: not late); shipped and at risk; and a cancelled one.
  await order({ current_stages: ['cam'], late_start_at: at(-10 * 60_000) }, [running('cam', ids.f1)]);
  await order({ customer_id: ids.c2, customer_country: 'US', current_stages: ['smt'], due_at: at(-2 * HOUR), promised_at: at(-2 * HOUR), last_event_at: at(-30 * HOUR), overrun_at: at(-HOUR) }, [
    running('smt', ids.f2),
  ]);
  await order({ status: 'on_hold', hold_cause: 'engineering_query', held_at: at(-DAY), due_at: at(-12 * HOUR), current_stages: ['cam'] });
  await order({ customer_id: ids.c2, customer_country: 'US', status: 'shipped', current_stages: ['shipping'], due_at: at(2 * DAY), at_risk_at: at(-HOUR) });
  await order({ status: 'cancelled', cancelled_at: at(-HOUR), current_stages: [] });
  await rebuildRollups(db);
});

afterAll(async () => {
  await t?.close();
});

describe('the summary on a fixed network, worked out by hand', () => {
  it('counts unfinished orders by state; a customer-paused order is not late', async () => {
    const s = await summary();
    expect(s.orders).toEqual({ open: 2, onHold: 1, inTransit: 1, late: 1, atRisk: 1, silent: 1, overrun: 1, lateStart: 1 });
    expect(s.wipByStage).toEqual([
      { stage: 'cam', orders: 2 },
      { stage: 'shipping', orders: 1 },
      { stage: 'smt', orders: 1 },
    ]);
    expect(s.customersByCountry).toEqual([
      { country: 'DE', openOrders: 2 },
      { country: 'US', openOrders: 2 },
    ]);
  });

  it('delivered in the window: on-time rate and lead time p50/p90 (nearest rank, within 2.5%)', async () => {
    const s = await summary('7d');
    expect(s.delivered).toMatchObject({ count: 2, onTime: 1, onTimeRate: 0.5 });
    expect(s.delivered.leadTimeHours.p50).toBeGreaterThan(120 * 0.975);
    expect(s.delivered.leadTimeHours.p50).toBeLessThan(120 * 1.025);
    expect(s.delivered.leadTimeHours.p90).toBeGreaterThan(240 * 0.975);
    expect(s.delivered.leadTimeHours.p90).toBeLessThan(240 * 1.025);
    // 60 days is not a kept league window: summed from the daily rollups instead.
    const wide = await summary('60d');
    expect(wide.delivered).toMatchObject({ count: 3, onTime: 2 });
  });

  it('the factory league: worst on-time stage rate first, with average delay and WIP', async () => {
    const week = await summary('7d');
    expect(week.factories).toEqual([
      { factoryId: ids.f1, name: 'Fixture fab', country: 'CN', stagesCompleted: 2, onTimeRate: 0.5, averageDelayHours: 0.5, wip: 1 },
      { factoryId: ids.f2, name: 'Fixture SMT', country: 'VN', stagesCompleted: 1, onTimeRate: 1, averageDelayHours: 0, wip: 1 },
    ]);
    const month = await summary('30d');
    const f2 = month.factories.find((f: any) => f.factoryId === ids.f2);
    expect(f2).toMatchObject({ stagesCompleted: 2, onTimeRate: 0.5, averageDelayHours: 3 });
  });
});

describe('the rollups against a recount', () => {
  it('events through the API move the figures at once, before and after the fold, and a recount agrees', async () => {
    const before = await summary();
    const o = await w.createOrder({ promisedAt: at(30 * DAY).toISOString() });
    const afterCreate = await summary();
    expect(afterCreate.orders.open).toBe(before.orders.open + 1);
    expect(afterCreate.customersByCountry.find((c: any) => c.country === 'DE').openOrders).toBe(
      before.customersByCountry.find((c: any) => c.country === 'DE').openOrders + 1,
    );
    for (const stage of ['review', 'cam', 'drilling']) await w.post(w.fab.api, o.id, { type: 'stage_completed', stage });
    await w.post(w.assembly.api, o.id, { type: 'stage_completed', stage: 'components' });
    await w.post(w.assembly.api, o.id, { type: 'stage_completed', stage: 'smt' });
    await w.post(w.logistics.api, o.id, { type: 'shipped', trackingNumber: 'SF1' });
    await w.post(w.logistics.api, o.id, { type: 'delivered' });
    const live = await summary();
    expect(live.orders.open).toBe(before.orders.open);
    expect(live.delivered.count).toBe(before.delivered.count + 1);
    expect(live.delivered.onTime).toBe(before.delivered.onTime + 1);

    // The league is kept by the fold job (a few seconds behind); everything else is exact at once.
    const without = ({ asOf: _, factories: __, ...rest }: any) => rest;
    await foldFacts(t.database.db);
    const folded = await summary();
    expect(without(folded)).toEqual(without(live));
    expect(folded.factories.find((f: any) => f.factoryId === w.fab.id)).toMatchObject({ stagesCompleted: 3, onTimeRate: 1 });
    await rebuildRollups(t.database.db);
    const recounted = await summary();
    expect({ ...recounted, asOf: null }).toEqual({ ...folded, asOf: null });
  });
});
