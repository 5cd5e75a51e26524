import { CUSTOMER_HOLD, UNFINISHED, type Derived, type OrderState, type StepState } from './model.js';

const HOUR = 3_600_000;
const MINUTE = 60_000;

/**
 * A step's projected finish as a function of the time t at which we look: max(t + lead, floor).
 * lead = -Infinity means "does not depend on t" and floor = -Infinity "no fixed lower bound".
 *
 * - done: it finished at completedAt.
 * - in progress: it finishes at startedAt + planned, but never before t (an overrunning stage
 *   is counted as still running).
 * - pending: it starts when its last predecessor finishes, never before t, and takes its planned
 *   hours; the max of such functions keeps the same form, so the whole route folds into one pair.
 */
interface Finish {
  lead: number;
  floor: number;
}

function stepFinish(step: StepState, finishes: Map<string, Finish>): Finish {
  if (step.status === 'done') return { lead: -Infinity, floor: step.completedAt!.getTime() };
  const planned = step.plannedHours * HOUR;
  if (step.status === 'in_progress') return { lead: 0, floor: step.startedAt!.getTime() + planned };
  let lead = 0;
  let floor = -Infinity;
  for (const dep of step.after) {
    const f = finishes.get(dep)!;
    lead = Math.max(lead, f.lead);
    floor = Math.max(floor, f.floor);
  }
  return { lead: lead + planned, floor: floor + planned };
}

/** The order's projected completion as (lead, floor): max(t + lead, floor) for any time t. */
export function projectCompletion(steps: readonly StepState[]): Finish {
  const finishes = new Map<string, Finish>();
  let lead = 0; // an unfinished order can complete no earlier than now
  let floor = -Infinity;
  for (const step of steps) {
    const f = stepFinish(step, finishes);
    finishes.set(step.stage, f);
    lead = Math.max(lead, f.lead);
    floor = Math.max(floor, f.floor);
  }
  return { lead, floor };
}

export const isReady = (state: OrderState, step: StepState) =>
  step.status === 'pending' && step.after.every((dep) => state.steps.find((s) => s.stage === dep)?.status === 'done');

/** Derives the stored projection from the state, as seen at `now`. */
export function derive(state: OrderState, now: Date): Derived {
  const total = state.steps.reduce((sum, s) => sum + s.plannedHours, 0);
  const doneWork = state.steps.reduce(
    (sum, s) => sum + s.plannedHours * (s.status === 'done' ? 1 : s.status === 'in_progress' ? s.progress / 100 : 0),
    0,
  );
  const progress = state.status === 'delivered' ? 100 : total > 0 ? Math.round((doneWork / total) * 1000) / 10 : 0;

  if (!UNFINISHED.includes(state.status)) {
    return { currentStages: [], progress, projectionLeadMinutes: null, projectionFloorAt: null, atRiskAt: null, overrunAt: null, lateStartAt: null };
  }
  const earliest = (times: number[]) => (times.length ? new Date(Math.min(...times)) : null);
  const overrunAt = earliest(
    state.steps.filter((s) => s.status === 'in_progress').map((s) => s.startedAt!.getTime() + s.plannedHours * HOUR),
  );
  const lateStartAt = earliest(state.steps.filter((s) => isReady(state, s)).map((s) => s.plannedStart.getTime()));
  const currentStages = state.steps
    .filter((s) => s.status === 'in_progress' || (state.status !== 'shipped' && isReady(state, s)))
    .map((s) => s.stage);
  const { lead, floor } = projectCompletion(state.steps);
  const leadMinutes = Math.ceil(lead / MINUTE);
  const due = state.dueAt.getTime();
  // At risk once t + lead > due, i.e. after due - lead; at once if the floor alone passes it.
  // While the customer holds the order the clock is paused: not at risk until it resumes.
  const customerHold = state.status === 'on_hold' && state.holdCause === CUSTOMER_HOLD;
  const atRiskAt = customerHold ? null : floor > due ? now : new Date(due - leadMinutes * MINUTE);
  return {
    currentStages,
    progress,
    projectionLeadMinutes: leadMinutes,
    projectionFloorAt: Number.isFinite(floor) ? new Date(floor) : null,
    atRiskAt,
    overrunAt,
    lateStartAt,
  };
}

/** Planned start and end of every step along the route, from the order's creation. */
export function planRoute(
  route: ReadonlyArray<{ stage: string; plannedHours: number; after: string[] }>,
  start: Date,
): Array<{ plannedStart: Date; plannedEnd: Date }> {
  const ends = new Map<string, number>();
  return route.map((step) => {
    const s = Math.max(start.getTime(), ...step.after.map((d) => ends.get(d)!));
    const e = s + step.plannedHours * HOUR;
    ends.set(step.stage, e);
    return { plannedStart: new Date(s), plannedEnd: new Date(e) };
  });
}

/** An instant as a Date, or as milliseconds since the epoch (a list page reads them so: list.ts). */
export type Instant = Date | number;
const ms = (t: Instant): number => (typeof t === 'number' ? t : t.getTime());

/**
 * Time-dependent flags of an order, as of `now`, against its due date (the promise, moved by
 * the customer's holds). While the customer holds it the clock is paused at the hold's start.
 * Late wins over at risk: a late order is not "at risk".
 */
export function flagsAt(
  o: {
    status: string;
    dueAt: Instant;
    deliveredAt: Instant | null;
    atRiskAt: Instant | null;
    holdCause?: string | null;
    heldAt?: Instant | null;
    overrunAt?: Instant | null;
    lateStartAt?: Instant | null;
  },
  now: Date,
): { late: boolean; atRisk: boolean; lateByMinutes: number; overrun: boolean; lateStart: boolean } {
  const unfinished = (UNFINISHED as readonly string[]).includes(o.status);
  const paused = o.status === 'on_hold' && o.holdCause === CUSTOMER_HOLD && o.heldAt != null ? o.heldAt : null;
  const end = o.deliveredAt ?? (unfinished ? (paused ?? now) : null);
  const lateMs = end !== null ? ms(end) - ms(o.dueAt) : 0;
  const late = lateMs > 0 && o.status !== 'cancelled';
  const atRisk = unfinished && !late && o.atRiskAt !== null && now.getTime() > ms(o.atRiskAt);
  const passed = (t: Instant | null | undefined) => unfinished && t != null && now.getTime() > ms(t);
  return { late, atRisk, lateByMinutes: late ? Math.floor(lateMs / MINUTE) : 0, overrun: passed(o.overrunAt), lateStart: passed(o.lateStartAt) };
}

/** Projected completion as of `now`; the delivery time once delivered. */
export function projectedAt(
  o: { status: string; deliveredAt: Date | null; projectionLeadMinutes: number | null; projectionFloorAt: Date | null },
  now: Date,
): Date | null {
  if (o.deliveredAt) return o.deliveredAt;
  const at = projectedMs(o, now);
  return at === null ? null : new Date(at);
}

/** projectedAt in milliseconds since the epoch. */
export function projectedMs(
  o: { deliveredAt: Instant | null; projectionLeadMinutes: number | null; projectionFloorAt: Instant | null },
  now: Date,
): number | null {
  if (o.deliveredAt !== null) return ms(o.deliveredAt);
  if (o.projectionLeadMinutes === null) return null;
  return Math.max(now.getTime() + o.projectionLeadMinutes * MINUTE, o.projectionFloorAt === null ? -Infinity : ms(o.projectionFloorAt));
}
