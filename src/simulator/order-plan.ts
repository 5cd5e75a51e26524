import { PRODUCTS, ROUTES, STAGES, type FactoryKind } from '../world/catalogue.js';
import type { Random } from '../world/random.js';
import type { Network } from './network-setup.js';
import type { IncidentRates } from './options.js';

const HOUR_MS = 3_600_000;
export const SHIPPING = 'shipping';

export interface PlannedStep {
  stage: string;
  kind: FactoryKind;
  /** Changes when the step is re-routed. */
  factoryId: string;
  /** As sent to the service: the catalogue median, compressed by the speed. */
  plannedHours: number;
  after: string[];
  /** Real milliseconds the work takes once started. */
  workMs: number;
  /** Progress percentages reported on the way. */
  progress: number[];
  /** A short stage reported only by its completion (which starts it implicitly). */
  completionOnly: boolean;
  slipped: boolean;
}

export interface OrderPlan {
  index: number;
  template: string;
  product: string;
  quantity: number;
  customerId: string;
  engineerId: string | undefined;
  /** From creation to the promised date, in real milliseconds. */
  promisedInMs: number;
  steps: PlannedStep[];
  hold?: { stage: string; cause: 'engineering_query' | 'material'; ms: number; atFraction: number };
  quality?: { stage: string; scrap: number; severity: 'minor' | 'major'; atFraction: number };
  reroute?: { stage: string; toFactoryId: string };
  slipped: boolean;
}

export interface PlanSettings {
  speed: number;
  rates: IncidentRates;
  templates: string[];
  promiseBufferMs: number;
}

const TEMPLATE_WEIGHTS: Record<string, number> = { 'pcb-2layer': 45, 'pcb-4layer': 30, pcba: 25 };
const QUANTITIES = [5, 10, 20, 50, 100, 250, 500, 1000];
const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));
const sig = (x: number) => Number(x.toPrecision(6));

/** Planned hours of each step's longest path from the start, and the longest of all. */
export function criticalPathHours(steps: ReadonlyArray<Pick<PlannedStep, 'stage' | 'after' | 'plannedHours'>>): number {
  const ends = new Map<string, number>();
  for (const s of steps) ends.set(s.stage, Math.max(0, ...s.after.map((d) => ends.get(d) ?? 0)) + s.plannedHours);
  return Math.max(0, ...ends.values());
}

/**
 * Draws one order's life before it starts: its route along a catalogue template, how long each
 * stage really takes (around the median, within the p90, unless it slips), and which incidents
 * it meets. Planned hours and the promise are compressed by the same factor as the work, so the
 * service's own clocks (planned end, at risk, late, overrun) run at the simulated pace.
 */
export function planOrder(rng: Random, index: number, network: Network, s: PlanSettings): OrderPlan {
  const template = rng.weighted(s.templates.map((t) => [t, TEMPLATE_WEIGHTS[t] ?? 10] as const));
  const shape = ROUTES[template]!;
  const customer = rng.pick(network.customers);
  const toMs = (hours: number) => (hours * HOUR_MS) / s.speed;

  const steps: PlannedStep[] = shape.map((t, i) => {
    const info = STAGES[t.stage]!;
    let planned = info.medianHours;
    let work: number;
    if (t.stage === 'components' && rng.chance(0.6)) {
      // In stock: picked from the shelf.
      planned = 1;
      work = clamp(rng.lognormal(0.5, 1), 0.2, 1);
    } else {
      // Spread around the median; an unslipped stage stays within a p90 (tamed for the long-tailed ones).
      const p90 = Math.min(info.p90Hours, 3 * info.medianHours);
      work = clamp(rng.lognormal(info.medianHours, p90), 0.3 * info.medianHours, p90);
    }
    const shipping = t.stage === SHIPPING;
    return {
      stage: t.stage,
      kind: info.kind,
      factoryId: rng.pick(network.factories[info.kind]),
      plannedHours: sig(planned / s.speed),
      after: t.after ?? (i > 0 ? [shape[i - 1]!.stage] : []),
      workMs: toMs(work),
      progress:
        !shipping && rng.chance(s.rates.progress)
          ? rng.chance(0.5)
            ? [rng.int(20, 80)]
            : [rng.int(15, 45), rng.int(55, 90)]
          : [],
      completionOnly: !shipping && info.medianHours <= 0.5 && rng.chance(0.3),
      slipped: false,
    };
  });

  const criticalMs = criticalPathHours(steps) * HOUR_MS;
  const plan: OrderPlan = {
    index,
    template,
    product: rng.pick(PRODUCTS[template]!),
    quantity: rng.pick(QUANTITIES),
    customerId: customer.id,
    engineerId: customer.engineers.length ? rng.pick(customer.engineers) : undefined,
    promisedInMs: criticalMs * (1.15 + rng.float() * 0.45) + s.promiseBufferMs,
    steps,
    slipped: false,
  };

  if (rng.chance(s.rates.slip)) {
    // Far beyond p90, and beyond the slack the promise holds: at risk while it drags, then late.
    plan.slipped = true;
    const victims = rng.chance(0.3) ? 2 : 1;
    for (let v = 0; v < victims; v++) {
      const step = rng.pick(steps);
      step.slipped = true;
      step.workMs +=
        toMs(STAGES[step.stage]!.p90Hours * (2 + 2 * rng.float())) +
        criticalMs * (0.5 + 0.7 * rng.float()) +
        s.promiseBufferMs / victims;
    }
  }
  const workSteps = steps.filter((st) => st.kind !== 'logistics');
  if (rng.chance(s.rates.hold)) {
    // An engineering query arises while the files are reviewed; a shortage anywhere on the line.
    const eq = rng.chance(0.5);
    const early = steps.filter((st) => st.stage === 'review' || st.stage === 'cam');
    const step = eq && early.length ? rng.pick(early) : rng.pick(workSteps);
    const hours = eq ? clamp(rng.lognormal(24, 48), 12, 72) : clamp(rng.lognormal(8, 36), 2, 48);
    plan.hold = {
      stage: step.stage,
      cause: eq ? 'engineering_query' : 'material',
      ms: toMs(hours),
      atFraction: 0.2 + 0.4 * rng.float(),
    };
  }
  if (rng.chance(s.rates.quality)) {
    const candidates = workSteps.filter((st) => st.kind !== 'components');
    const step = rng.pick(candidates);
    plan.quality = {
      stage: step.stage,
      scrap: rng.int(1, Math.max(1, Math.floor(plan.quantity * 0.08))),
      severity: rng.chance(0.7) ? 'minor' : 'major',
      atFraction: 0.3 + 0.5 * rng.float(),
    };
  }
  if (rng.chance(s.rates.reroute)) {
    // A pending step moves to a sister factory: capacity, a machine down, a cheaper quote.
    const movable = steps.slice(1).filter((st) => network.factories[st.kind].length > 1);
    if (movable.length) {
      const step = rng.pick(movable);
      const others = network.factories[step.kind].filter((f) => f !== step.factoryId);
      plan.reroute = { stage: step.stage, toFactoryId: rng.pick(others) };
    }
  }
  // A stage where something is reported midway is reported from its start, too.
  for (const step of steps)
    if (step.stage === plan.hold?.stage || step.stage === plan.quality?.stage) step.completionOnly = false;
  return plan;
}

/** The typical real time from creation to delivery, to pace new orders. */
export function typicalOrderMs(speed: number, templates: string[]): number {
  const hours = templates.map((t) =>
    criticalPathHours(
      ROUTES[t]!.map((st, i, all) => ({
        stage: st.stage,
        plannedHours: STAGES[st.stage]!.medianHours,
        after: st.after ?? (i ? [all[i - 1]!.stage] : []),
      })),
    ),
  );
  return ((hours.reduce((a, b) => a + b, 0) / hours.length) * HOUR_MS) / speed;
}
