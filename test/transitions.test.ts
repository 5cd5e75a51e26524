// The transition rules of an order, idempotency of every write, and per-order ordering, all
// through real HTTP. Each accepted event is checked against the order's projection; each refused
// one against its problem document and against the order, which must not have changed.
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { loadOrders } from '../src/orders/repository.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { ON_REAL_POSTGRES } from './helpers/env.js';
import type { ApiClient, Reply } from './helpers/http.js';
import { createWorld, standardRoute, type World } from './helpers/world.js';

let t: TestApp;
let w: World;
/** A fourth factory (assembly), on no route until an order is re-routed to it. */
let spare: { id: string; api: ApiClient };

beforeAll(async () => {
  t = await startTestApp();
  w = await createWorld(t);
  const f = await w.admin.post('/v1/factories', { name: 'Shangrao SMT 3', kind: 'assembly', country: 'CN', timezone: 'Asia/Shanghai' });
  expect(f.status, f.text).toBe(201);
  const k = await w.admin.post(`/v1/factories/${f.body.id}/api-keys`, { label: 'mes' });
  expect(k.status, k.text).toBe(201);
  spare = { id: f.body.id, api: t.api.as({ apiKey: k.body.key }) };
});
afterAll(() => t?.close());

// ---------------------------------------------------------------------------------------------
// Helpers

type Ev = Record<string, unknown>;
type StepStatus = 'pending' | 'in_progress' | 'done';
interface StepExpect {
  status: StepStatus;
  progress?: number;
  startedAt?: string;
  completedAt?: string;
  factoryId?: string;
}

const key = (what = 'k') => `${what}-${randomUUID()}`;
const iso = (ms: number) => new Date(ms).toISOString();
const keyHeader = (k?: string) => (k ? { 'idempotency-key': k } : undefined);

async function orderOf(id: string): Promise<any> {
  const r = await w.ops.get(`/v1/orders/${id}`);
  expect(r.status, r.text).toBe(200);
  return r.body;
}

async function eventsOf(id: string): Promise<any[]> {
  const r = await w.ops.get(`/v1/orders/${id}/events?limit=1000`);
  expect(r.status, r.text).toBe(200);
  return r.body.items;
}

const stepOf = (order: any, stage: string) => order.route.find((s: any) => s.stage === stage);

/** Seq exactly 1..n and cursors strictly increasing in seq order. */
function expectGaplessAndOrdered(events: any[]) {
  expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
  for (let i = 1; i < events.length; i++) {
    expect(events[i].cursor > events[i - 1].cursor, `cursor of seq ${events[i].seq} after seq ${events[i - 1].seq}`).toBe(true);
  }
}

/**
 * Checks the order's projection. With `steps`, every stage not named is expected pending, each
 * step's times follow its status, and the order's progress is the planned-hours-weighted share of
 * the work done (unless `progress` is given).
 */
function expectOrder(
  order: any,
  exp: { status?: string; currentStages?: string[]; progress?: number; lastSeq?: number; steps?: Record<string, StepStatus | StepExpect> },
) {
  if (exp.status) expect(order.status).toBe(exp.status);
  if (exp.currentStages) expect(order.currentStages).toEqual(exp.currentStages);
  if (exp.lastSeq !== undefined) expect(order.lastSeq).toBe(exp.lastSeq);
  if (exp.steps) {
    let total = 0;
    let done = 0;
    for (const step of order.route) {
      const raw = exp.steps[step.stage] ?? 'pending';
      const e: StepExpect = typeof raw === 'string' ? { status: raw } : raw;
      const where = `route step ${step.stage}`;
      expect(step.status, where).toBe(e.status);
      if (e.factoryId) expect(step.factoryId, where).toBe(e.factoryId);
      if (e.status === 'pending') {
        expect(step.startedAt, where).toBeNull();
        expect(step.completedAt, where).toBeNull();
        expect(step.progress, where).toBe(0);
      } else if (e.status === 'in_progress') {
        expect(step.startedAt, where).toEqual(expect.any(String));
        expect(step.completedAt, where).toBeNull();
        if (e.progress !== undefined) expect(step.progress, where).toBe(e.progress);
      } else {
        expect(step.startedAt, where).toEqual(expect.any(String));
        expect(step.completedAt, where).toEqual(expect.any(String));
        expect(Date.parse(step.completedAt), where).toBeGreaterThanOrEqual(Date.parse(step.startedAt));
        expect(step.progress, where).toBe(100);
      }
      if (e.startedAt) expect(step.startedAt, where).toBe(e.startedAt);
      if (e.completedAt) expect(step.completedAt, where).toBe(e.completedAt);
      total += step.plannedHours;
      done += step.plannedHours * (e.status === 'done' ? 1 : e.status === 'in_progress' ? (e.progress ?? step.progress) / 100 : 0);
    }
    if (exp.progress === undefined && order.status !== 'delivered') {
      expect(order.progress).toBe(Math.round((done / total) * 1000) / 10);
    }
  }
  if (exp.progress !== undefined) expect(order.progress).toBe(exp.progress);
}

/** Posts an event that must be accepted: 201, next seq, last in the log; returns it and the order after it. */
async function accept(api: ApiClient, orderId: string, event: Ev, idemKey?: string): Promise<{ event: any; order: any }> {
  const r = await api.post(`/v1/orders/${orderId}/events`, event, keyHeader(idemKey));
  expect(r.status, r.text).toBe(201);
  expect(r.headers.get('idempotent-replayed')).toBeNull();
  const e = r.body;
  expect(e).toMatchObject({ orderId, type: event.type });
  if (event.occurredAt) expect(e.occurredAt).toBe(new Date(event.occurredAt as string).toISOString());
  const order = await orderOf(orderId);
  expect(order.lastSeq).toBe(e.seq);
  const log = await eventsOf(orderId);
  expect(log.length).toBe(e.seq);
  expect(log.at(-1)).toEqual(e);
  return { event: e, order };
}

/** What a refused request must leave as it was. */
async function snapshot(orderId: string) {
  const o = await orderOf(orderId);
  const events = await eventsOf(orderId);
  return {
    status: o.status,
    holdCause: o.holdCause,
    currentStages: o.currentStages,
    progress: o.progress,
    lastSeq: o.lastSeq,
    updatedAt: o.updatedAt,
    route: o.route,
    events: events.map((e) => e.id),
  };
}

function expectProblem(r: Reply, status: number, slug: string, detail?: RegExp) {
  expect(r.status, r.text).toBe(status);
  expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(r.body.status).toBe(status);
  expect(r.body.type).toMatch(new RegExp(`/${slug}$`));
  if (detail) expect(r.body.detail).toMatch(detail);
}

/** Posts an event that must be refused with `status` and the problem `slug`, changing nothing. */
async function refuse(api: ApiClient, orderId: string, event: Ev, status: number, slug: string, detail?: RegExp, idemKey?: string) {
  const before = await snapshot(orderId);
  const r = await api.post(`/v1/orders/${orderId}/events`, event, keyHeader(idemKey));
  expectProblem(r, status, slug, detail);
  expect(await snapshot(orderId)).toEqual(before);
  return r.body;
}

const conflict = (api: ApiClient, orderId: string, event: Ev, slug: string, detail: RegExp, idemKey?: string) =>
  refuse(api, orderId, event, 409, slug, detail, idemKey);
const forbidden = (api: ApiClient, orderId: string, event: Ev) => refuse(api, orderId, event, 403, 'forbidden');

/** Completes review, cam, drilling and components, each by its own factory: smt becomes ready. */
async function completePredecessorsOfSmt(orderId: string) {
  await accept(w.fab.api, orderId, { type: 'stage_completed', stage: 'review' });
  await accept(w.fab.api, orderId, { type: 'stage_completed', stage: 'cam' });
  await accept(w.fab.api, orderId, { type: 'stage_completed', stage: 'drilling' });
  await accept(w.assembly.api, orderId, { type: 'stage_completed', stage: 'components' });
}

const postBatch = (api: ApiClient, events: Ev[]) => api.post('/v1/events/batch', { events });

// ---------------------------------------------------------------------------------------------

describe('stage_started', () => {
  it('starts a stage only when the steps it waits for are done, along parallel branches', async () => {
    const o = await w.createOrder();
    expectOrder(o, { status: 'open', currentStages: ['review', 'components'], lastSeq: 1, progress: 0, steps: {} });

    await conflict(w.fab.api, o.id, { type: 'stage_started', stage: 'cam' }, 'predecessors-not-done', /cam waits for review/);
    await conflict(w.assembly.api, o.id, { type: 'stage_started', stage: 'smt' }, 'predecessors-not-done', /smt waits for drilling, components/);
    await conflict(w.ops, o.id, { type: 'stage_started', stage: 'painting' }, 'stage-not-on-route', /painting/);

    // components waits for nothing: it starts at once, beside review.
    let r = await accept(w.assembly.api, o.id, { type: 'stage_started', stage: 'components' });
    expect(r.event).toMatchObject({ seq: 2, stage: 'components', factoryId: w.assembly.id, actor: `factory:${w.assembly.id}` });
    expectOrder(r.order, {
      status: 'open',
      currentStages: ['review', 'components'],
      steps: { components: { status: 'in_progress', progress: 0, startedAt: r.event.occurredAt } },
    });
    await conflict(w.assembly.api, o.id, { type: 'stage_started', stage: 'components' }, 'stage-already-started', /components is already in progress/);

    r = await accept(w.fab.api, o.id, { type: 'stage_started', stage: 'review' });
    expectOrder(r.order, { currentStages: ['review', 'components'], steps: { review: 'in_progress', components: 'in_progress' } });
    r = await accept(w.fab.api, o.id, { type: 'stage_completed', stage: 'review' });
    expectOrder(r.order, {
      currentStages: ['cam', 'components'],
      progress: 0.9, // 0.5 of 56.5 planned hours
      steps: { review: { status: 'done', completedAt: r.event.occurredAt }, components: 'in_progress' },
    });
    await conflict(w.fab.api, o.id, { type: 'stage_started', stage: 'review' }, 'stage-already-started', /review is already done/);

    r = await accept(w.assembly.api, o.id, { type: 'stage_completed', stage: 'components' });
    expectOrder(r.order, { currentStages: ['cam'], progress: 43.4, steps: { review: 'done', components: 'done' } });
    // components is done, drilling is not: smt still waits, and names only what it waits for.
    await conflict(w.assembly.api, o.id, { type: 'stage_started', stage: 'smt' }, 'predecessors-not-done', /smt waits for drilling to be completed/);

    r = await accept(w.fab.api, o.id, { type: 'stage_started', stage: 'cam' });
    expectOrder(r.order, { currentStages: ['cam'], steps: { review: 'done', components: 'done', cam: 'in_progress' } });
    r = await accept(w.fab.api, o.id, { type: 'stage_completed', stage: 'cam' });
    expectOrder(r.order, { currentStages: ['drilling'], steps: { review: 'done', components: 'done', cam: 'done' } });
    r = await accept(w.fab.api, o.id, { type: 'stage_completed', stage: 'drilling' });
    expectOrder(r.order, { currentStages: ['smt'], steps: { review: 'done', components: 'done', cam: 'done', drilling: 'done' } });
    r = await accept(w.assembly.api, o.id, { type: 'stage_started', stage: 'smt' });
    expectOrder(r.order, {
      status: 'open',
      currentStages: ['smt'],
      lastSeq: 9,
      steps: { review: 'done', components: 'done', cam: 'done', drilling: 'done', smt: { status: 'in_progress', startedAt: r.event.occurredAt } },
    });
    expectGaplessAndOrdered(await eventsOf(o.id));
  });
});

describe('stage_progress', () => {
  it('implicitly starts a ready stage, refuses a stage that is not ready, and never moves backwards', async () => {
    const o = await w.createOrder();
    await conflict(w.fab.api, o.id, { type: 'stage_progress', stage: 'cam', progress: 10 }, 'predecessors-not-done', /cam waits for review/);

    const t0 = Date.now() - 3600_000;
    let r = await accept(w.fab.api, o.id, { type: 'stage_progress', stage: 'review', progress: 30, occurredAt: iso(t0) });
    expect(r.event).toMatchObject({ stage: 'review', factoryId: w.fab.id, data: { progress: 30 } });
    expectOrder(r.order, {
      currentStages: ['review', 'components'],
      progress: 0.3,
      steps: { review: { status: 'in_progress', progress: 30, startedAt: iso(t0) } },
    });

    r = await accept(w.fab.api, o.id, { type: 'stage_progress', stage: 'review', progress: 60, quantityGood: 30, occurredAt: iso(t0 + 60_000) });
    expect(r.event.data).toEqual({ progress: 60, quantityGood: 30 });
    expectOrder(r.order, { steps: { review: { status: 'in_progress', progress: 60, startedAt: iso(t0) } } });
    // The same progress again is not backwards.
    r = await accept(w.fab.api, o.id, { type: 'stage_progress', stage: 'review', progress: 60, occurredAt: iso(t0 + 120_000) });
    expectOrder(r.order, { steps: { review: { status: 'in_progress', progress: 60 } } });

    await conflict(w.fab.api, o.id, { type: 'stage_progress', stage: 'review', progress: 59.5 }, 'progress-backwards', /review may not move backwards \(now 60, got 59\.5\)/);
    await conflict(w.fab.api, o.id, { type: 'stage_progress', stage: 'review', progress: 0 }, 'progress-backwards', /backwards/);

    // occurredAt before the stage started
    await conflict(
      w.fab.api,
      o.id,
      { type: 'stage_progress', stage: 'review', progress: 70, occurredAt: iso(t0 - 1000) },
      'time-before-start',
      new RegExp(`before stage review started \\(${iso(t0).replaceAll('.', '\\.')}\\)`),
    );
    await conflict(w.fab.api, o.id, { type: 'stage_completed', stage: 'review', occurredAt: iso(t0 - 60_000) }, 'time-before-start', /before stage review started/);

    r = await accept(w.fab.api, o.id, { type: 'stage_completed', stage: 'review', occurredAt: iso(t0 + 180_000) });
    expectOrder(r.order, {
      currentStages: ['cam', 'components'],
      steps: { review: { status: 'done', startedAt: iso(t0), completedAt: iso(t0 + 180_000) } },
    });
    await conflict(w.fab.api, o.id, { type: 'stage_progress', stage: 'review', progress: 100 }, 'stage-done', /review is already done/);
    expectGaplessAndOrdered(await eventsOf(o.id));
  });
});

describe('stage_completed', () => {
  it('implicitly starts a pending stage whose predecessors are done, refuses one whose are not, and refuses twice', async () => {
    const o = await w.createOrder();
    await conflict(w.assembly.api, o.id, { type: 'stage_completed', stage: 'smt' }, 'predecessors-not-done', /smt waits for drilling, components to be completed/);
    await conflict(w.fab.api, o.id, { type: 'stage_completed', stage: 'drilling' }, 'predecessors-not-done', /drilling waits for cam/);

    const at = iso(Date.now() - 30 * 60_000);
    let r = await accept(w.assembly.api, o.id, { type: 'stage_completed', stage: 'components', quantityGood: 50, occurredAt: at });
    expect(r.event).toMatchObject({ stage: 'components', factoryId: w.assembly.id, data: { quantityGood: 50 } });
    expectOrder(r.order, {
      currentStages: ['review'],
      progress: 42.5, // 24 of 56.5 planned hours
      steps: { components: { status: 'done', startedAt: at, completedAt: at } },
    });
    await conflict(w.assembly.api, o.id, { type: 'stage_completed', stage: 'components' }, 'stage-done', /components is already done/);
    await conflict(w.assembly.api, o.id, { type: 'stage_completed', stage: 'smt' }, 'predecessors-not-done', /smt waits for drilling to be completed/);

    r = await accept(w.fab.api, o.id, { type: 'stage_completed', stage: 'review' });
    expectOrder(r.order, { currentStages: ['cam'], steps: { components: 'done', review: 'done' } });
    await accept(w.fab.api, o.id, { type: 'stage_completed', stage: 'cam' });
    r = await accept(w.fab.api, o.id, { type: 'stage_completed', stage: 'drilling' });
    expectOrder(r.order, { currentStages: ['smt'], steps: { components: 'done', review: 'done', cam: 'done', drilling: 'done' } });
    r = await accept(w.assembly.api, o.id, { type: 'stage_completed', stage: 'smt', quantityGood: 49, quantityScrap: 1 });
    expectOrder(r.order, {
      status: 'open',
      // Every stage but shipping is done; shipping is ready.
      currentStages: ['shipping'],
      progress: 57.5,
      steps: { components: 'done', review: 'done', cam: 'done', drilling: 'done', smt: { status: 'done', startedAt: r.event.occurredAt, completedAt: r.event.occurredAt } },
    });
    await conflict(w.assembly.api, o.id, { type: 'stage_completed', stage: 'smt' }, 'stage-done', /smt is already done/);
    expectGaplessAndOrdered(await eventsOf(o.id));
  });
});

describe('hold and resumed', () => {
  it('holds an open order once, refuses work while on hold, takes notes, and resumes', async () => {
    const o = await w.createOrder();
    await accept(w.fab.api, o.id, { type: 'stage_started', stage: 'review' });
    await conflict(w.ops, o.id, { type: 'resumed' }, 'not-on-hold', /not on hold/);

    // Factory systems may not hold, resume, cancel or re-route.
    await forbidden(w.fab.api, o.id, { type: 'hold', cause: 'material', reason: 'no laminate' });
    await forbidden(w.fab.api, o.id, { type: 'resumed' });
    await forbidden(w.fab.api, o.id, { type: 'cancelled', reason: 'we are full' });
    await forbidden(w.assembly.api, o.id, { type: 'rerouted', stage: 'smt', factoryId: spare.id });

    let r = await accept(w.ops, o.id, { type: 'hold', cause: 'material', reason: 'copper foil late' });
    // A hold is attributed to the one stage it stops (review, at the fab), for the factory's KPIs.
    expect(r.event).toMatchObject({ stage: 'review', factoryId: w.fab.id, data: { cause: 'material', reason: 'copper foil late', stages: ['review'] } });
    expectOrder(r.order, { status: 'on_hold', currentStages: ['review', 'components'], steps: { review: 'in_progress' } });
    expect(r.order.holdCause).toBe('material');

    await conflict(w.ops, o.id, { type: 'hold', reason: 'again' }, 'not-open', /only an open order can be put on hold \(it is on_hold\)/);
    for (const [api, event] of [
      [w.fab.api, { type: 'stage_progress', stage: 'review', progress: 50 }],
      [w.fab.api, { type: 'stage_completed', stage: 'review' }],
      [w.assembly.api, { type: 'stage_started', stage: 'components' }],
      [w.logistics.api, { type: 'shipped', trackingNumber: 'SF1' }],
      [w.logistics.api, { type: 'delivered' }],
    ] as Array<[ApiClient, Ev]>) {
      await conflict(api, o.id, event, 'order-on-hold', /on hold \(material\); post resumed first/);
    }

    // Notes and quality issues are not work: they are taken while on hold.
    r = await accept(w.fab.api, o.id, { type: 'note', text: 'waiting for foil', stage: 'review' });
    expect(r.event).toMatchObject({ stage: 'review', factoryId: w.fab.id, data: { text: 'waiting for foil' } });
    expectOrder(r.order, { status: 'on_hold' });
    r = await accept(w.ops, o.id, { type: 'note', text: 'supplier called' });
    expect(r.event).toMatchObject({ stage: null, factoryId: null });
    r = await accept(w.fab.api, o.id, { type: 'quality_issue', stage: 'review', description: 'scratches' });
    expectOrder(r.order, { status: 'on_hold' });

    r = await accept(w.ops, o.id, { type: 'resumed', reason: 'foil arrived' });
    expectOrder(r.order, { status: 'open', currentStages: ['review', 'components'], steps: { review: 'in_progress' } });
    expect(r.order.holdCause).toBeNull();
    r = await accept(w.fab.api, o.id, { type: 'stage_progress', stage: 'review', progress: 50 });
    expectOrder(r.order, { status: 'open', steps: { review: { status: 'in_progress', progress: 50 } } });
    await conflict(w.ops, o.id, { type: 'resumed' }, 'not-on-hold', /not on hold/);
    expectGaplessAndOrdered(await eventsOf(o.id));
  });
});

describe('shipped and delivered', () => {
  it('ships only when every other stage is done, starting the shipping step, and delivers only after', async () => {
    const o = await w.createOrder();
    await conflict(w.logistics.api, o.id, { type: 'shipped', trackingNumber: 'SF1' }, 'stages-not-done', /cannot ship before review, cam, drilling, components, smt are completed/);
    await conflict(w.logistics.api, o.id, { type: 'delivered' }, 'not-shipped', /must be shipped before it is delivered/);

    await accept(w.fab.api, o.id, { type: 'stage_completed', stage: 'review' });
    await accept(w.fab.api, o.id, { type: 'stage_completed', stage: 'cam' });
    await accept(w.fab.api, o.id, { type: 'stage_completed', stage: 'drilling' });
    await accept(w.assembly.api, o.id, { type: 'stage_completed', stage: 'components' });
    await conflict(w.logistics.api, o.id, { type: 'shipped', trackingNumber: 'SF1' }, 'stages-not-done', /cannot ship before smt are completed/);
    await accept(w.assembly.api, o.id, { type: 'stage_completed', stage: 'smt' });

    // Only the shipping factory ships.
    await forbidden(w.fab.api, o.id, { type: 'shipped', trackingNumber: 'SF1' });
    await forbidden(w.assembly.api, o.id, { type: 'delivered' });

    const allDone = { review: 'done', cam: 'done', drilling: 'done', components: 'done', smt: 'done' } as const;
    let r = await accept(w.logistics.api, o.id, { type: 'shipped', trackingNumber: 'SF123456789CN', carrier: 'SF Express' });
    expect(r.event).toMatchObject({ stage: 'shipping', factoryId: w.logistics.id, data: { trackingNumber: 'SF123456789CN', carrier: 'SF Express' } });
    expectOrder(r.order, {
      status: 'shipped',
      currentStages: ['shipping'],
      progress: 57.5,
      steps: { ...allDone, shipping: { status: 'in_progress', progress: 0, startedAt: r.event.occurredAt } },
    });

    await conflict(w.logistics.api, o.id, { type: 'shipped', trackingNumber: 'SF2' }, 'not-open', /the order is shipped; only an open order can ship/);
    await conflict(w.ops, o.id, { type: 'cancelled', reason: 'too late' }, 'already-shipped', /shipped order cannot be cancelled/);
    await conflict(w.ops, o.id, { type: 'hold', reason: 'customs' }, 'not-open', /it is shipped/);

    r = await accept(w.logistics.api, o.id, { type: 'delivered' });
    expect(r.event).toMatchObject({ stage: 'shipping', factoryId: w.logistics.id });
    expectOrder(r.order, {
      status: 'delivered',
      currentStages: [],
      progress: 100,
      steps: { ...allDone, shipping: { status: 'done', completedAt: r.event.occurredAt } },
    });

    // Nothing, not even a note, after delivered.
    for (const [api, event] of [
      [w.ops, { type: 'note', text: 'late remark' }],
      [w.logistics.api, { type: 'note', text: 'signed by reception' }],
      [w.logistics.api, { type: 'delivered' }],
      [w.ops, { type: 'hold', reason: 'x' }],
      [w.ops, { type: 'resumed' }],
      [w.ops, { type: 'cancelled', reason: 'x' }],
      [w.fab.api, { type: 'quality_issue', stage: 'review', description: 'field failure' }],
      [w.ops, { type: 'rerouted', stage: 'shipping', factoryId: spare.id }],
    ] as Array<[ApiClient, Ev]>) {
      await conflict(api, o.id, event, 'order-closed', /the order is delivered; it takes no further events/);
    }
    expectGaplessAndOrdered(await eventsOf(o.id));
  });

  it('refuses a delivery dated before the shipping step started', async () => {
    const o = await w.createOrder();
    await completePredecessorsOfSmt(o.id);
    await accept(w.assembly.api, o.id, { type: 'stage_completed', stage: 'smt' });
    const shippedAt = Date.now() - 60_000;
    await accept(w.logistics.api, o.id, { type: 'shipped', trackingNumber: 'SF9', occurredAt: iso(shippedAt) });
    await conflict(w.logistics.api, o.id, { type: 'delivered', occurredAt: iso(shippedAt - 3600_000) }, 'time-before-start', /before stage shipping started/);
    const d = await accept(w.logistics.api, o.id, { type: 'delivered', occurredAt: iso(shippedAt + 1000) });
    expect(stepOf(d.order, 'shipping')).toMatchObject({ status: 'done', startedAt: iso(shippedAt), completedAt: iso(shippedAt + 1000) });
  });

  it('on a route without a shipping stage, the last stage’s factory ships and no step is started', async () => {
    const route = standardRoute(w).filter((s) => s.stage !== 'shipping');
    const o = await w.createOrder({ route });
    await accept(w.fab.api, o.id, { type: 'stage_completed', stage: 'review' });
    await accept(w.fab.api, o.id, { type: 'stage_completed', stage: 'cam' });
    await accept(w.fab.api, o.id, { type: 'stage_completed', stage: 'drilling' });
    await accept(w.assembly.api, o.id, { type: 'stage_completed', stage: 'components' });
    await accept(w.assembly.api, o.id, { type: 'stage_completed', stage: 'smt' });
    // Logistics is not on this route: it may not know the order exists.
    await refuse(w.logistics.api, o.id, { type: 'shipped', trackingNumber: 'X' }, 404, 'not-found');
    // Only the factory of the route's last stage ships it.
    await forbidden(w.fab.api, o.id, { type: 'shipped', trackingNumber: 'X' });
    const r = await accept(w.assembly.api, o.id, { type: 'shipped', trackingNumber: 'DHL1' });
    expect(r.event).toMatchObject({ stage: null, factoryId: null });
    expectOrder(r.order, { status: 'shipped', currentStages: [], progress: 100 });
    const d = await accept(w.assembly.api, o.id, { type: 'delivered' });
    expectOrder(d.order, { status: 'delivered', currentStages: [], progress: 100 });
  });
});

describe('cancelled', () => {
  it('cancels an open order, and then takes nothing', async () => {
    const o = await w.createOrder();
    await accept(w.fab.api, o.id, { type: 'stage_started', stage: 'review' });
    const r = await accept(w.ops, o.id, { type: 'cancelled', reason: 'customer withdrew' });
    expect(r.event).toMatchObject({ stage: null, factoryId: null, data: { reason: 'customer withdrew' } });
    expectOrder(r.order, { status: 'cancelled', currentStages: [], steps: { review: 'in_progress' } });
    for (const [api, event] of [
      [w.ops, { type: 'note', text: 'for the record' }],
      [w.fab.api, { type: 'note', text: 'scrapped panels' }],
      [w.fab.api, { type: 'stage_progress', stage: 'review', progress: 50 }],
      [w.fab.api, { type: 'stage_completed', stage: 'review' }],
      [w.ops, { type: 'resumed' }],
      [w.ops, { type: 'hold', reason: 'x' }],
      [w.ops, { type: 'cancelled', reason: 'again' }],
      [w.ops, { type: 'rerouted', stage: 'smt', factoryId: spare.id }],
    ] as Array<[ApiClient, Ev]>) {
      await conflict(api, o.id, event, 'order-closed', /the order is cancelled; it takes no further events/);
    }
  });

  it('cancels an order on hold', async () => {
    const o = await w.createOrder();
    await accept(w.ops, o.id, { type: 'hold', cause: 'engineering_query', reason: 'gerber question' });
    const r = await accept(w.ops, o.id, { type: 'cancelled', reason: 'customer never answered' });
    expectOrder(r.order, { status: 'cancelled', currentStages: [] });
    await conflict(w.ops, o.id, { type: 'resumed' }, 'order-closed', /cancelled/);
  });
});

describe('rerouted', () => {
  it('moves a pending stage to another existing factory, which then owns it', async () => {
    const o = await w.createOrder();
    // Not on the route yet: the spare factory may not know the order exists.
    expect((await spare.api.get(`/v1/orders/${o.id}`)).status).toBe(404);
    await refuse(spare.api, o.id, { type: 'note', text: 'hello' }, 404, 'not-found');

    await refuse(w.ops, o.id, { type: 'rerouted', stage: 'smt', factoryId: randomUUID() }, 400, 'validation-failed');
    const bad = await w.ops.post(`/v1/orders/${o.id}/events`, { type: 'rerouted', stage: 'smt', factoryId: randomUUID() });
    expect(bad.body.errors).toEqual([{ path: 'body.factoryId', message: expect.any(String) }]);
    await conflict(w.ops, o.id, { type: 'rerouted', stage: 'smt', factoryId: w.assembly.id }, 'same-factory', /smt is already assigned to that factory/);
    await conflict(w.ops, o.id, { type: 'rerouted', stage: 'painting', factoryId: spare.id }, 'stage-not-on-route', /painting/);
    await accept(w.assembly.api, o.id, { type: 'stage_started', stage: 'components' });
    await conflict(w.ops, o.id, { type: 'rerouted', stage: 'components', factoryId: spare.id }, 'stage-not-pending', /components is in progress; only pending stages/);

    const r = await accept(w.ops, o.id, { type: 'rerouted', stage: 'smt', factoryId: spare.id, reason: 'line down' });
    expect(r.event).toMatchObject({ stage: 'smt', factoryId: spare.id, data: { fromFactoryId: w.assembly.id, reason: 'line down' } });
    expectOrder(r.order, {
      status: 'open',
      currentStages: ['review', 'components'],
      steps: { components: 'in_progress', smt: { status: 'pending', factoryId: spare.id } },
    });
    expect(stepOf(r.order, 'smt').factoryId).toBe(spare.id);
    expect((await spare.api.get(`/v1/orders/${o.id}`)).status).toBe(200);

    await accept(w.fab.api, o.id, { type: 'stage_completed', stage: 'review' });
    await accept(w.fab.api, o.id, { type: 'stage_completed', stage: 'cam' });
    await accept(w.fab.api, o.id, { type: 'stage_completed', stage: 'drilling' });
    await accept(w.assembly.api, o.id, { type: 'stage_completed', stage: 'components' });

    // The old factory (still on the route for components) may no longer post for smt; the new one may.
    await forbidden(w.assembly.api, o.id, { type: 'stage_started', stage: 'smt' });
    await forbidden(w.assembly.api, o.id, { type: 'stage_completed', stage: 'smt' });
    await forbidden(spare.api, o.id, { type: 'stage_progress', stage: 'review', progress: 100 });
    const s = await accept(spare.api, o.id, { type: 'stage_started', stage: 'smt' });
    expect(s.event).toMatchObject({ stage: 'smt', factoryId: spare.id, actor: `factory:${spare.id}` });
    expectOrder(s.order, {
      currentStages: ['smt'],
      steps: { review: 'done', cam: 'done', drilling: 'done', components: 'done', smt: { status: 'in_progress', factoryId: spare.id } },
    });
    await conflict(w.ops, o.id, { type: 'rerouted', stage: 'smt', factoryId: w.assembly.id }, 'stage-not-pending', /smt is in progress/);
    const c = await accept(spare.api, o.id, { type: 'stage_completed', stage: 'smt' });
    expectOrder(c.order, { currentStages: ['shipping'], steps: { review: 'done', cam: 'done', drilling: 'done', components: 'done', smt: 'done' } });
  });
});

describe('quality_issue', () => {
  it('is recorded with and without a stage, by the stage’s factory or by ops', async () => {
    const o = await w.createOrder();
    let r = await accept(w.fab.api, o.id, { type: 'quality_issue', stage: 'review', description: 'missing drill file', severity: 'major', quantityScrap: 2 });
    expect(r.event).toMatchObject({
      stage: 'review',
      factoryId: w.fab.id,
      data: { description: 'missing drill file', severity: 'major', quantityScrap: 2 },
    });
    expectOrder(r.order, { status: 'open', currentStages: ['review', 'components'], progress: 0, steps: {} });

    r = await accept(w.ops, o.id, { type: 'quality_issue', description: 'customer reported warped boards' });
    expect(r.event).toMatchObject({ stage: null, factoryId: null, data: { description: 'customer reported warped boards', severity: 'minor' } });
    expectOrder(r.order, { status: 'open', steps: {} });

    await forbidden(w.assembly.api, o.id, { type: 'quality_issue', stage: 'review', description: 'not mine to say' });
    await conflict(w.ops, o.id, { type: 'quality_issue', stage: 'painting', description: 'x' }, 'stage-not-on-route', /painting/);
    expectGaplessAndOrdered(await eventsOf(o.id));
  });
});

// ---------------------------------------------------------------------------------------------

describe('idempotency of single posts', () => {
  it('replays the same key and body with the original event, refuses another body with 422', async () => {
    const o = await w.createOrder();
    const k = key();
    const event = { type: 'stage_started', stage: 'review' };
    const first = await accept(w.fab.api, o.id, event, k);

    const again = await w.fab.api.post(`/v1/orders/${o.id}/events`, event, keyHeader(k));
    expect(again.status, again.text).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body).toEqual(first.event);
    // The same JSON value with its keys in another order is the same body.
    const reordered = await w.fab.api.post(`/v1/orders/${o.id}/events`, { stage: 'review', type: 'stage_started' }, keyHeader(k));
    expect(reordered.status, reordered.text).toBe(200);
    expect(reordered.body).toEqual(first.event);
    expect((await eventsOf(o.id)).length).toBe(2);
    expect((await orderOf(o.id)).lastSeq).toBe(2);

    await refuse(w.fab.api, o.id, { type: 'stage_progress', stage: 'review', progress: 50 }, 422, 'idempotency-key-reused', /different request body/, k);
    // The same key and body for another order is another request.
    const o2 = await w.createOrder();
    await refuse(w.fab.api, o2.id, event, 422, 'idempotency-key-reused', undefined, k);

    // A retry arriving after the state moved on still gets the original result, not a 409.
    await accept(w.fab.api, o.id, { type: 'stage_completed', stage: 'review' });
    const late = await w.fab.api.post(`/v1/orders/${o.id}/events`, event, keyHeader(k));
    expect(late.status, late.text).toBe(200);
    expect(late.body).toEqual(first.event);
    expect((await eventsOf(o.id)).length).toBe(3);
  });

  it('scopes keys to the caller: two factories, ops and a factory, two ops users', async () => {
    const o = await w.createOrder();
    const k = key('shared');
    const note = { type: 'note', text: 'same words, different authors' };
    const byFab = await accept(w.fab.api, o.id, note, k);
    const byAssembly = await accept(w.assembly.api, o.id, note, k);
    const byOps = await accept(w.ops, o.id, note, k);
    const otherOps = t.api.as(await t.token({ role: 'ops', sub: 'ops-other' }));
    const byOtherOps = await accept(otherOps, o.id, note, k);
    const ids = [byFab, byAssembly, byOps, byOtherOps].map((r) => r.event.id);
    expect(new Set(ids).size).toBe(4);
    expect([byFab, byAssembly, byOps, byOtherOps].map((r) => r.event.seq)).toEqual([2, 3, 4, 5]);

    // Each caller's retry returns its own event.
    for (const [api, original] of [
      [w.fab.api, byFab],
      [w.assembly.api, byAssembly],
      [w.ops, byOps],
      [otherOps, byOtherOps],
    ] as Array<[ApiClient, { event: any }]>) {
      const r = await api.post(`/v1/orders/${o.id}/events`, note, keyHeader(k));
      expect(r.status, r.text).toBe(200);
      expect(r.body).toEqual(original.event);
    }
    // Different bodies under the same key by different callers are not a mismatch either.
    const k2 = key('stages');
    await accept(w.fab.api, o.id, { type: 'stage_started', stage: 'review' }, k2);
    await accept(w.assembly.api, o.id, { type: 'stage_started', stage: 'components' }, k2);
    expect((await eventsOf(o.id)).length).toBe(7);
  });

  it('does not burn the key of a refused request: after fixing the state, the same key succeeds', async () => {
    const o = await w.createOrder();
    const k = key();
    const smt = { type: 'stage_started', stage: 'smt' };
    await conflict(w.assembly.api, o.id, smt, 'predecessors-not-done', /smt waits for drilling, components/, k);
    await conflict(w.assembly.api, o.id, smt, 'predecessors-not-done', /smt waits for drilling, components/, k);
    await completePredecessorsOfSmt(o.id);
    const ok = await accept(w.assembly.api, o.id, smt, k);
    expectOrder(ok.order, { currentStages: ['smt'], steps: { review: 'done', cam: 'done', drilling: 'done', components: 'done', smt: 'in_progress' } });
    const replay = await w.assembly.api.post(`/v1/orders/${o.id}/events`, smt, keyHeader(k));
    expect(replay.status, replay.text).toBe(200);
    expect(replay.body).toEqual(ok.event);

    // A refused request's key may also carry the corrected request.
    const k2 = key();
    await conflict(w.ops, o.id, { type: 'resumed' }, 'not-on-hold', /not on hold/, k2);
    await accept(w.ops, o.id, { type: 'hold', cause: 'capacity', reason: 'line full' }, k2);
    // And a forbidden one does not burn it either.
    const k3 = key();
    await forbidden(w.assembly.api, o.id, { type: 'note', text: 'x', stage: 'review' });
    await refuse(w.assembly.api, o.id, { type: 'note', text: 'x', stage: 'review' }, 403, 'forbidden', undefined, k3);
    await accept(w.assembly.api, o.id, { type: 'note', text: 'x', stage: 'smt' }, k3);
    expectGaplessAndOrdered(await eventsOf(o.id));
  });

  it('answers 10 concurrent identical requests with one 201 and nine 200, all the same event, one event in the log', async () => {
    const o = await w.createOrder();
    const k = key('burst');
    const event = { type: 'stage_progress', stage: 'review', progress: 25, quantityGood: 10 };
    const replies = await Promise.all(Array.from({ length: 10 }, () => w.fab.api.post(`/v1/orders/${o.id}/events`, event, keyHeader(k))));
    const statuses = replies.map((r) => r.status).sort();
    expect(statuses, replies.map((r) => r.text).join('\n')).toEqual([200, 200, 200, 200, 200, 200, 200, 200, 200, 201]);
    const created = replies.find((r) => r.status === 201)!;
    for (const r of replies) {
      expect(r.body).toEqual(created.body);
      expect(r.headers.get('idempotent-replayed')).toBe(r.status === 200 ? 'true' : null);
    }
    const log = await eventsOf(o.id);
    expect(log.map((e) => e.type)).toEqual(['created', 'stage_progress']);
    expect(log[1]).toEqual(created.body);
    expectOrder(await orderOf(o.id), { lastSeq: 2, steps: { review: { status: 'in_progress', progress: 25 } } });
  });

  it('under concurrency, one key with different bodies gives one event and 422s; a refused burst burns no key', async () => {
    const o = await w.createOrder();
    const k = key('mixed');
    const replies = await Promise.all(
      Array.from({ length: 5 }, (_, i) => w.fab.api.post(`/v1/orders/${o.id}/events`, { type: 'stage_progress', stage: 'review', progress: 10 + i }, keyHeader(k))),
    );
    expect(replies.map((r) => r.status).sort(), replies.map((r) => r.text).join('\n')).toEqual([201, 422, 422, 422, 422]);
    for (const r of replies.filter((x) => x.status === 422)) expect(r.body.type).toMatch(/\/idempotency-key-reused$/);
    expect((await eventsOf(o.id)).length).toBe(2);

    const k2 = key('refused-burst');
    const smt = { type: 'stage_started', stage: 'smt' };
    const refused = await Promise.all(Array.from({ length: 5 }, () => w.assembly.api.post(`/v1/orders/${o.id}/events`, smt, keyHeader(k2))));
    expect(refused.map((r) => r.status)).toEqual([409, 409, 409, 409, 409]);
    for (const r of refused) expect(r.body.type).toMatch(/\/predecessors-not-done$/);
    await completePredecessorsOfSmt(o.id);
    await accept(w.assembly.api, o.id, smt, k2);
    expectGaplessAndOrdered(await eventsOf(o.id));
  });
});

describe('idempotency of order creation', () => {
  const body = (product: string, extra: Record<string, unknown> = {}) => ({
    customerId: w.customerA.id,
    engineerId: w.customerA.engineerId,
    product,
    quantity: 50,
    promisedAt: iso(Date.now() + 7 * 86400_000),
    route: standardRoute(w),
    ...extra,
  });
  const ordersNamed = async (product: string) => {
    const r = await w.ops.get(`/v1/orders?product=${encodeURIComponent(product)}&limit=200`);
    expect(r.status, r.text).toBe(200);
    return r.body.items as any[];
  };

  it('replays the same key and body, refuses another body, and scopes the key to the caller', async () => {
    const product = `replay-${randomUUID()}`;
    const k = key('order');
    const b = body(product);
    const first = await w.ops.post('/v1/orders', b, keyHeader(k));
    expect(first.status, first.text).toBe(201);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const again = await w.ops.post('/v1/orders', b, keyHeader(k));
    expect(again.status, again.text).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body.id).toBe(first.body.id);
    expect(again.body.createdAt).toBe(first.body.createdAt);
    expect(await ordersNamed(product)).toHaveLength(1);
    expect((await eventsOf(first.body.id)).map((e) => e.type)).toEqual(['created']);

    const other = await w.ops.post('/v1/orders', { ...b, quantity: 51 }, keyHeader(k));
    expectProblem(other, 422, 'idempotency-key-reused');
    expect(await ordersNamed(product)).toHaveLength(1);

    // Another ops user with the same key makes its own order.
    const otherOps = t.api.as(await t.token({ role: 'ops', sub: 'ops-creator-2' }));
    const theirs = await otherOps.post('/v1/orders', b, keyHeader(k));
    expect(theirs.status, theirs.text).toBe(201);
    expect(theirs.body.id).not.toBe(first.body.id);
    expect(await ordersNamed(product)).toHaveLength(2);
  });

  it('creates exactly one order for 10 concurrent identical creations', async () => {
    const product = `burst-${randomUUID()}`;
    const k = key('order-burst');
    const b = body(product, { externalRef: `PO-${randomUUID().slice(0, 8)}` });
    const replies = await Promise.all(Array.from({ length: 10 }, () => w.ops.post('/v1/orders', b, keyHeader(k))));
    expect(replies.map((r) => r.status).sort(), replies.map((r) => r.text).join('\n')).toEqual([200, 200, 200, 200, 200, 200, 200, 200, 200, 201]);
    const ids = new Set(replies.map((r) => r.body.id));
    expect(ids.size).toBe(1);
    for (const r of replies) expect(r.headers.get('idempotent-replayed')).toBe(r.status === 200 ? 'true' : null);
    const listed = await ordersNamed(product);
    expect(listed.map((o) => o.id)).toEqual([...ids]);
    expect((await eventsOf(listed[0].id)).map((e) => [e.seq, e.type])).toEqual([[1, 'created']]);
  });

  it('without a key, concurrent creations with one externalRef make one order and 409s that say why', async () => {
    const product = `ref-${randomUUID()}`;
    const b = body(product, { externalRef: `PO-${randomUUID().slice(0, 8)}` });
    const replies = await Promise.all(Array.from({ length: 5 }, () => w.ops.post('/v1/orders', b)));
    expect(replies.map((r) => r.status).sort(), replies.map((r) => r.text).join('\n')).toEqual([201, 409, 409, 409, 409]);
    for (const r of replies.filter((x) => x.status === 409)) {
      expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(r.body.detail).toMatch(/externalRef|already exists/);
    }
    expect(await ordersNamed(product)).toHaveLength(1);
  });
});

describe('idempotency of batches', () => {
  it('answers a key repeated inside one batch like a retry of its first use', async () => {
    const o = await w.createOrder();
    const k = key('dup');
    const item = { orderId: o.id, idempotencyKey: k, type: 'stage_started', stage: 'review' };
    const r = await postBatch(w.fab.api, [item, { ...item }]);
    expect(r.status, r.text).toBe(200);
    const [a, b] = r.body.results;
    expect(a.status).toBe(201);
    expect(b.status).toBe(200);
    expect(b.event).toEqual(a.event);
    expect((await eventsOf(o.id)).length).toBe(2);

    // The same key with another body in the same batch: 422 for the second, the first stands.
    const k2 = key('dup-mismatch');
    const r2 = await postBatch(w.fab.api, [
      { orderId: o.id, idempotencyKey: k2, type: 'stage_progress', stage: 'review', progress: 10 },
      { orderId: o.id, idempotencyKey: k2, type: 'stage_progress', stage: 'review', progress: 20 },
    ]);
    expect(r2.status, r2.text).toBe(200);
    expect(r2.body.results.map((x: any) => x.status)).toEqual([201, 422]);
    expect(r2.body.results[1].error.type).toMatch(/\/idempotency-key-reused$/);
    expectOrder(await orderOf(o.id), { lastSeq: 3, steps: { review: { status: 'in_progress', progress: 10 } } });

    // A batch item replays a single post made with the same key and body, and vice versa.
    const k3 = key('cross');
    const single = await accept(w.fab.api, o.id, { type: 'note', text: 'posted alone' }, k3);
    const r3 = await postBatch(w.fab.api, [{ orderId: o.id, idempotencyKey: k3, type: 'note', text: 'posted alone' }]);
    expect(r3.body.results).toEqual([{ status: 200, event: single.event }]);
    const again = await w.fab.api.post(`/v1/orders/${o.id}/events`, { type: 'stage_progress', stage: 'review', progress: 10 }, keyHeader(k2));
    expect(again.status, again.text).toBe(200);
    expect(again.body).toEqual(r2.body.results[0].event);
    expect((await eventsOf(o.id)).length).toBe(4);
  });

  it('answers a batch retried whole with the original events, item by item', async () => {
    const o1 = await w.createOrder();
    const o2 = await w.createOrder();
    const items = [
      { orderId: o1.id, idempotencyKey: key(), type: 'note', text: 'first' },
      { orderId: o2.id, idempotencyKey: key(), type: 'hold', cause: 'quality', reason: 'xray' },
      { orderId: o1.id, idempotencyKey: key(), type: 'stage_started', stage: 'review' },
      { orderId: o1.id, idempotencyKey: key(), type: 'stage_completed', stage: 'review' },
      { orderId: o2.id, idempotencyKey: key(), type: 'stage_started', stage: 'components' }, // on hold: 409
      { orderId: o2.id, idempotencyKey: key(), type: 'resumed' },
    ];
    const first = await postBatch(w.ops, items);
    expect(first.status, first.text).toBe(200);
    expect(first.body.results.map((x: any) => x.status)).toEqual([201, 201, 201, 201, 409, 201]);
    expect(first.body.results[4].error.type).toMatch(/\/order-on-hold$/);
    expect(first.body.results.filter((x: any) => x.event).map((x: any) => [x.event.orderId, x.event.seq])).toEqual([
      [o1.id, 2],
      [o2.id, 2],
      [o1.id, 3],
      [o1.id, 4],
      [o2.id, 3],
    ]);
    expectOrder(await orderOf(o1.id), { lastSeq: 4, currentStages: ['cam', 'components'], steps: { review: 'done' } });
    expectOrder(await orderOf(o2.id), { status: 'open', lastSeq: 3, steps: {} });
    const log1 = await eventsOf(o1.id);
    const log2 = await eventsOf(o2.id);

    const retry = await postBatch(w.ops, items);
    expect(retry.status, retry.text).toBe(200);
    // Every accepted item replays; the refused one, whose key was not burnt, is judged again: the
    // order is open by now, so it is accepted this time.
    expect(retry.body.results.map((x: any) => x.status)).toEqual([200, 200, 200, 200, 201, 200]);
    first.body.results.forEach((x: any, i: number) => {
      if (x.status === 201) expect(retry.body.results[i].event).toEqual(x.event);
    });
    expect(await eventsOf(o1.id)).toEqual(log1);
    expect((await eventsOf(o2.id)).slice(0, log2.length)).toEqual(log2);
    expect((await eventsOf(o2.id)).length).toBe(log2.length + 1);

    const third = await postBatch(w.ops, items);
    expect(third.body.results.map((x: any) => x.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(third.body.results[4].event).toEqual(retry.body.results[4].event);
  });

  it('runs concurrent batches over overlapping orders, in different orders, without deadlock or gaps', async () => {
    const orders = await Promise.all(Array.from({ length: 4 }, () => w.createOrder()));
    const shared = key('shared-across-batches');
    const batches = Array.from({ length: 8 }, (_, b) => {
      // Each batch visits the orders in its own order: rotated, and reversed for odd batches.
      const rotated = orders.map((_, i) => orders[(i + b) % orders.length]!);
      const visit = b % 2 ? rotated.reverse() : rotated;
      return [
        ...visit.flatMap((o, i) => [
          { orderId: o.id, idempotencyKey: key(`b${b}`), type: 'note', text: `batch ${b} item ${i}` },
          { orderId: o.id, idempotencyKey: key(`b${b}`), type: 'quality_issue', description: `batch ${b} check ${i}` },
        ]),
        { orderId: orders[0]!.id, idempotencyKey: shared, type: 'note', text: 'posted by every batch once' },
      ];
    });
    const replies = await Promise.all(batches.map((events) => postBatch(w.ops, events)));
    for (const r of replies) {
      expect(r.status, r.text).toBe(200);
      expect(r.body.results.slice(0, -1).every((x: any) => x.status === 201)).toBe(true);
    }
    const sharedResults = replies.map((r) => r.body.results.at(-1));
    expect(sharedResults.map((x: any) => x.status).sort()).toEqual([200, 200, 200, 200, 200, 200, 200, 201]);
    expect(new Set(sharedResults.map((x: any) => x.event.id)).size).toBe(1);

    for (const [i, o] of orders.entries()) {
      const log = await eventsOf(o.id);
      expect(log.length).toBe(1 + 8 * 2 + (i === 0 ? 1 : 0));
      expectGaplessAndOrdered(log);
      expect((await orderOf(o.id)).lastSeq).toBe(log.length);
      // Every 201 answered is in the log exactly as answered.
      const byId = new Map(log.map((e) => [e.id, e]));
      for (const r of replies) {
        for (const x of r.body.results) if (x.event.orderId === o.id) expect(byId.get(x.event.id)).toEqual(x.event);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('ordering under concurrency', () => {
  it('keeps seq gapless and cursors increasing after a burst of progress reports to one order', async () => {
    const o = await w.createOrder();
    await accept(w.fab.api, o.id, { type: 'stage_started', stage: 'review' });
    const replies = await Promise.all(
      Array.from({ length: 20 }, (_, i) => w.fab.api.post(`/v1/orders/${o.id}/events`, { type: 'stage_progress', stage: 'review', progress: (i + 1) * 5 })),
    );
    for (const r of replies) {
      expect([201, 409], r.text).toContain(r.status);
      if (r.status === 409) expect(r.body.type).toMatch(/\/progress-backwards$/);
    }
    const accepted = replies.filter((r) => r.status === 201).map((r) => r.body);
    expect(accepted.length).toBeGreaterThan(0);

    const log = await eventsOf(o.id);
    expect(log.length).toBe(2 + accepted.length);
    expectGaplessAndOrdered(log);
    const byId = new Map(log.map((e) => [e.id, e]));
    for (const e of accepted) expect(byId.get(e.id)).toEqual(e);
    // Accepted reports never went backwards along seq.
    const progresses = log.filter((e) => e.type === 'stage_progress').map((e) => e.data.progress);
    expect(progresses).toEqual([...progresses].sort((a, b) => a - b));
    const order = await orderOf(o.id);
    expectOrder(order, { lastSeq: log.length, steps: { review: { status: 'in_progress', progress: progresses.at(-1) } } });
  });

  it('keeps seq gapless and cursors increasing for concurrent writers of one order', async () => {
    const o = await w.createOrder();
    const writers = [w.ops, w.fab.api, w.assembly.api, w.logistics.api];
    const replies = await Promise.all(
      Array.from({ length: 24 }, (_, i) => writers[i % writers.length]!.post(`/v1/orders/${o.id}/events`, { type: 'note', text: `note ${i}` })),
    );
    expect(replies.map((r) => r.status)).toEqual(replies.map(() => 201));
    expect(replies.map((r) => r.body.seq).sort((a, b) => a - b)).toEqual(Array.from({ length: 24 }, (_, i) => i + 2));
    const log = await eventsOf(o.id);
    expect(log.length).toBe(25);
    expectGaplessAndOrdered(log);
    expect((await orderOf(o.id)).lastSeq).toBe(25);
  });
});

describe('writes under a schema change', () => {
  // The write path's statements are prepared once per connection (db/flight.ts): one whose result
  // changed shape when a column is added would fail on every call until the instance restarts.
  it('go on when a migration adds a column to orders while the instance runs', async () => {
    const o = await w.createOrder();
    await w.post(w.fab.api, o.id, { type: 'stage_progress', stage: 'review', progress: 10 }, 201, key());
    await sql`alter table orders add column added_by_a_later_migration text`.execute(t.database.db);
    try {
      await w.post(w.fab.api, o.id, { type: 'stage_progress', stage: 'review', progress: 20 }, 201, key());
      const batch = await w.fab.api.post('/v1/events/batch', { events: [{ orderId: o.id, idempotencyKey: key(), type: 'stage_progress', stage: 'review', progress: 30 }] });
      expect(batch.status, batch.text).toBe(200);
      expect(batch.body.results[0].status, batch.text).toBe(201);
      expect((await orderOf(o.id)).lastSeq).toBe(4);
    } finally {
      await sql`alter table orders drop column added_by_a_later_migration`.execute(t.database.db);
    }
  });
});

describe('orders kept between writes', () => {
  // The instance keeps each order as it committed it (orders/state-cache.ts) and writes the next
  // update from that. What it keeps must be exactly what a load would read, or a kept order and a
  // loaded one could be judged differently.
  it('are exactly what a load reads, for every order this file wrote', async () => {
    const o = await w.createOrder();
    // A real column keeps a float4: 66.60000001 comes back as 66.6.
    await w.post(w.fab.api, o.id, { type: 'stage_progress', stage: 'review', progress: 33.3 }, 201, key());
    await w.post(w.fab.api, o.id, { type: 'stage_progress', stage: 'review', progress: 66.60000001 }, 201, key());
    const views = [...t.app.orderStates.views()];
    const loaded = await t.database.db.transaction().execute((tx) => loadOrders(tx, views.map((v) => v.row.id)));
    let compared = 0;
    for (const view of views) {
      const now = loaded.get(view.row.id)!;
      if (now.row.last_seq !== view.row.last_seq) continue; // moved since (the alert job): the next write reads it again
      expect(view, view.row.id).toEqual(now);
      compared++;
    }
    expect(compared).toBeGreaterThan(20);
  });

  // A write to orders the instance keeps goes in one flight with its commit (events/kept-append.ts),
  // guarded: if another instance moved the order, or the key was used before, it is redone the
  // long way. Two instances of the app on one database, each with its own kept orders.
  it('take one round trip, and are redone the long way when another instance moved the order or a key repeats', async () => {
    const other = await buildApp({ config: t.config, database: t.database, logger: false });
    try {
      const fabB = w.fab.api.at(await other.listen({ port: 0, host: '127.0.0.1' }));
      const paths = async () => {
        const text = (await t.api.get('/metrics')).text;
        const n = (path: string) => Number(new RegExp(`orderstream_append_transactions_total\\{path="${path}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
        return { kept: n('kept'), stale: n('stale'), loaded: n('loaded') };
      };
      const o = await w.createOrder();
      await w.post(w.fab.api, o.id, { type: 'stage_progress', stage: 'review', progress: 10 }, 201, key());
      const before = await paths();
      const second = await w.post(w.fab.api, o.id, { type: 'stage_progress', stage: 'review', progress: 20 }, 201, key());
      expect(second.seq).toBe(3);
      expect((await paths()).kept - before.kept, 'a kept order takes the short way').toBeGreaterThanOrEqual(1);

      // B writes the order: A's kept order is one seq behind.
      await w.post(fabB, o.id, { type: 'stage_progress', stage: 'review', progress: 30 }, 201, key());
      const beforeStale = await paths();
      const fourth = await w.post(w.fab.api, o.id, { type: 'stage_progress', stage: 'review', progress: 40 }, 201, key());
      expect([fourth.seq, fourth.data.progress]).toEqual([5, 40]);
      // Judged on the moved order, not the kept one: B's 30 stands before it.
      await w.post(w.fab.api, o.id, { type: 'stage_progress', stage: 'review', progress: 35 }, 409, key());
      const after = await paths();
      expect(after.stale - beforeStale.stale, 'the short way found the order moved').toBeGreaterThanOrEqual(1);

      // A retry of a kept order's write: the guard sees the key, the long way replays it.
      const k = key();
      const first = await w.post(w.fab.api, o.id, { type: 'stage_progress', stage: 'review', progress: 50 }, 201, k);
      const again = await w.post(w.fab.api, o.id, { type: 'stage_progress', stage: 'review', progress: 50 }, 200, k);
      expect(again.id).toBe(first.id);

      const events = await eventsOf(o.id);
      expectGaplessAndOrdered(events);
      expect(events.filter((e) => e.type === 'stage_progress').map((e) => e.data.progress)).toEqual([10, 20, 30, 40, 50]);
      expect((await orderOf(o.id)).lastSeq).toBe(events.length);
    } finally {
      await other.close();
    }
  });
});

describe('single writes grouped into transactions', () => {
  // The group commit (events/append-queue.ts) runs one transaction at a time, but a transaction
  // that waits for a locked order opens a lane beside it after a short while: every other order
  // goes on being written. (The embedded engine has one connection: nothing to hold a lock on.)
  it.skipIf(!ON_REAL_POSTGRES)('go on for other orders while one order is locked by another writer', async () => {
    const locked = await w.createOrder();
    const free = await w.createOrder();
    const holder = await t.database.pool!.connect();
    try {
      await holder.query('begin');
      await holder.query('select pg_advisory_xact_lock(hashtextextended($1::text, 0))', [locked.id]);
      const waiting = w.fab.api.post(`/v1/orders/${locked.id}/events`, { type: 'stage_progress', stage: 'review', progress: 10 });
      await new Promise((r) => setTimeout(r, 200)); // its transaction is in flight, waiting for the lock
      for (let i = 1; i <= 3; i++) await w.post(w.fab.api, free.id, { type: 'stage_progress', stage: 'review', progress: i * 10 });
      let answered = false;
      void waiting.then(() => (answered = true));
      await new Promise((r) => setTimeout(r, 50));
      expect(answered, 'the write to the locked order waits for the lock').toBe(false);
      await holder.query('commit');
      expect((await waiting).status).toBe(201);
    } finally {
      await holder.query('rollback').catch(() => undefined);
      holder.release();
    }
  });
});
