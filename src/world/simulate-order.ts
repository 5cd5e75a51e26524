import type { Derived, OrderState, OrderStatus, StepState } from '../orders/model.js';
import { derive, flagsAt, planRoute } from '../orders/projection.js';
import { ROUTES, STAGES, type FactoryKind } from './catalogue.js';
import type { Random } from './random.js';

const HOUR = 3_600_000;

export interface SimulatedEvent {
  type: string;
  stage: string | null;
  factoryId: string | null;
  at: Date;
  data: Record<string, unknown>;
}

export interface SimulatedOrder {
  state: OrderState;
  derived: Derived;
  product: string;
  quantity: number;
  template: string;
  events: SimulatedEvent[];
  lateAlerted: boolean;
  atRiskAlerted: boolean;
}

const round1 = (x: number) => Math.round(x * 10) / 10;

/**
 * One order's life from its creation until `now`, drawn around the planned durations of the
 * catalogue: some slip, some are held (an engineering query waits on the customer), a few are
 * cancelled; the result is the state, the projection and the events the service would hold.
 */
export function simulateOrder(
  rng: Random,
  o: { id: string; customerId: string; template: string; product: string; createdAt: Date; now: Date },
  factoryOf: (kind: FactoryKind) => string,
): SimulatedOrder {
  const template = ROUTES[o.template]!;
  const route = template.map((t, i) => {
    const info = STAGES[t.stage]!;
    return {
      stage: t.stage,
      factoryId: factoryOf(info.kind),
      plannedHours: round1(t.stage === 'components' && rng.chance(0.6) ? 1 : info.medianHours),
      after: t.after ?? (i > 0 ? [template[i - 1]!.stage] : []),
    };
  });
  const plan = planRoute(route, o.createdAt);
  const critical = Math.max(...plan.map((p) => p.plannedEnd.getTime())) - o.createdAt.getTime();
  const promisedAt = new Date(Math.ceil((o.createdAt.getTime() + critical * (1.05 + rng.float() * 0.6)) / HOUR) * HOUR);
  const now = o.now.getTime();

  // The actual timeline.
  const heldAt = rng.chance(0.06) ? rng.int(0, route.length - 1) : -1;
  const holdHours = heldAt >= 0 ? rng.lognormal(24, 72) : 0;
  const holdCause = rng.chance(0.5) ? 'engineering_query' : rng.pick(['material', 'equipment', 'capacity']);
  const cancelAt = rng.chance(0.01) ? o.createdAt.getTime() + rng.float() * (now - o.createdAt.getTime()) : Infinity;
  const ends = new Map<string, number>();
  const events: SimulatedEvent[] = [];
  const steps: StepState[] = route.map((r, i) => {
    let start = Math.max(o.createdAt.getTime(), ...r.after.map((d) => ends.get(d)!));
    if (i === heldAt) {
      const holdStart = start;
      start += holdHours * HOUR;
      if (holdStart <= Math.min(now, cancelAt)) {
        events.push({ type: 'hold', stage: null, factoryId: null, at: new Date(holdStart), data: { cause: holdCause, reason: 'waiting on the customer / material' } });
        if (start <= Math.min(now, cancelAt)) events.push({ type: 'resumed', stage: null, factoryId: null, at: new Date(start), data: {} });
      }
    }
    const info = STAGES[r.stage]!;
    const hours = r.plannedHours === 1 && r.stage === 'components' ? 0.5 : rng.lognormal(info.medianHours, info.p90Hours);
    const end = start + hours * HOUR;
    ends.set(r.stage, end);
    const limit = Math.min(now, cancelAt);
    const started = start <= limit;
    const done = end <= limit;
    const step: StepState = {
      position: i,
      stage: r.stage,
      factoryId: r.factoryId,
      plannedHours: r.plannedHours,
      after: r.after,
      plannedStart: plan[i]!.plannedStart,
      plannedEnd: plan[i]!.plannedEnd,
      status: done ? 'done' : started ? 'in_progress' : 'pending',
      progress: done ? 100 : started ? Math.min(99, Math.floor(((limit - start) / (end - start)) * 100)) : 0,
      startedAt: started ? new Date(start) : null,
      completedAt: done ? new Date(end) : null,
    };
    const base = { stage: r.stage, factoryId: r.factoryId };
    if (r.stage === 'shipping') {
      if (started) events.push({ type: 'shipped', ...base, at: new Date(start), data: { trackingNumber: `SF${rng.int(1e9, 9e9)}CN`, carrier: 'SF Express' } });
      if (done) events.push({ type: 'delivered', ...base, at: new Date(end), data: {} });
    } else {
      if (started) events.push({ type: 'stage_started', ...base, at: new Date(start), data: {} });
      if (started && !done && step.progress >= 50) events.push({ type: 'stage_progress', ...base, at: new Date(start + (end - start) / 2), data: { progress: 50 } });
      if (done) {
        const scrap = rng.chance(0.03) ? rng.int(1, 5) : 0;
        if (scrap) events.push({ type: 'quality_issue', ...base, at: new Date(end), data: { description: 'defects found at inspection', severity: 'minor', quantityScrap: scrap } });
        events.push({ type: 'stage_completed', ...base, at: new Date(end), data: scrap ? { quantityScrap: scrap } : {} });
      }
    }
    return step;
  });

  const shipping = steps.find((s) => s.stage === 'shipping');
  let status: OrderStatus = 'open';
  if (cancelAt <= now) status = 'cancelled';
  else if (shipping?.status === 'done') status = 'delivered';
  else if (shipping?.status === 'in_progress') status = 'shipped';
  else if (heldAt >= 0 && events.some((e) => e.type === 'hold') && !events.some((e) => e.type === 'resumed')) status = 'on_hold';
  if (status === 'cancelled') events.push({ type: 'cancelled', stage: null, factoryId: null, at: new Date(cancelAt), data: { reason: 'customer cancelled' } });

  const state: OrderState = {
    id: o.id,
    customerId: o.customerId,
    status,
    promisedAt,
    // A customer's hold that ended moved the promise by its length; one still running pauses it.
    dueAt:
      holdCause === 'engineering_query' && events.some((e) => e.type === 'resumed')
        ? new Date(promisedAt.getTime() + holdHours * HOUR)
        : promisedAt,
    createdAt: o.createdAt,
    holdCause: status === 'on_hold' ? holdCause : null,
    heldAt: status === 'on_hold' ? (events.find((e) => e.type === 'hold')?.at ?? null) : null,
    shippedAt: shipping?.startedAt ?? null,
    deliveredAt: status === 'delivered' ? shipping!.completedAt : null,
    cancelledAt: status === 'cancelled' ? new Date(cancelAt) : null,
    lastSeq: 0,
    steps,
  };
  const derived = derive(state, o.now);
  const flags = flagsAt(
    { status, dueAt: state.dueAt, deliveredAt: state.deliveredAt, atRiskAt: derived.atRiskAt, holdCause: state.holdCause, heldAt: state.heldAt },
    o.now,
  );
  // The alerts the service would have raised by now, at their moments.
  if (flags.late && status !== 'delivered') events.push({ type: 'became_late', stage: null, factoryId: null, at: state.dueAt, data: { promisedAt: promisedAt.toISOString() } });
  if (flags.atRisk) events.push({ type: 'became_at_risk', stage: null, factoryId: null, at: o.now, data: { promisedAt: promisedAt.toISOString() } });
  events.sort((a, b) => a.at.getTime() - b.at.getTime());
  state.lastSeq = events.length + 1; // + created
  return {
    state,
    derived,
    product: o.product,
    quantity: rng.weighted([
      [5, 30],
      [10, 25],
      [50, 20],
      [100, 15],
      [1000, 10],
    ] as const),
    template: o.template,
    events,
    lateAlerted: flags.late && status !== 'delivered',
    atRiskAlerted: flags.atRisk || (flags.late && status !== 'delivered'),
  };
}
