import type { Transaction } from 'kysely';
import type { DB, KpiFactsTable } from '../db/schema.js';
import type { Insertable } from 'kysely';
import type { OrderState } from '../orders/model.js';

/** A change to a KPI, recorded in the transaction of the write that made it (see migration 0006). */
export type Fact = Insertable<KpiFactsTable>;

const HOUR = 3_600_000;
const UNFINISHED = new Set(['open', 'on_hold', 'shipped']);

/** The UTC calendar day of an instant, as 'YYYY-MM-DD'. */
export const dayOf = (at: Date) => at.toISOString().slice(0, 10);

/** What an order counts for in the network's counters while it is unfinished. */
export interface Counted {
  status: string;
  currentStages: string[];
  country: string;
  /** Late from then on (customer pauses aside: see the summary). */
  dueAt: Date;
  /** At risk from then on, if ever. */
  atRiskAt: Date | null;
  /** A stage overran its plan from then on, if ever. */
  overrunAt: Date | null;
}

type CountedRow = {
  status: string;
  current_stages: string[];
  customer_country: string;
  due_at: Date;
  at_risk_at: Date | null;
  overrun_at: Date | null;
};

export const countedOf = (row: CountedRow): Counted => ({
  status: row.status,
  currentStages: row.current_stages,
  country: row.customer_country,
  dueAt: row.due_at,
  atRiskAt: row.at_risk_at,
  overrunAt: row.overrun_at,
});

/** The UTC hour of an instant, as 'YYYY-MM-DDTHH': keys of one kind sort as their hours do. */
export const hourOf = (at: Date) => at.toISOString().slice(0, 13);

/**
 * The counters an unfinished order is in: its status, country and current stages; and the hours
 * from which it is late (`due:`), at risk or late (`risk:`, the earlier of the two moments) and
 * overrunning (`overrun:`), so that the summary counts those as hour buckets before now plus the
 * hour in progress, not order by order (ops/queries.ts).
 */
const keysOf = (c: Counted | null) => {
  if (!c || !UNFINISHED.has(c.status)) return [];
  const keys = [`status:${c.status}`, `country:${c.country}`, ...c.currentStages.map((s) => `stage:${s}`), `due:${hourOf(c.dueAt)}`];
  keys.push(`risk:${hourOf(c.atRiskAt && c.atRiskAt < c.dueAt ? c.atRiskAt : c.dueAt)}`);
  if (c.overrunAt) keys.push(`overrun:${hourOf(c.overrunAt)}`);
  return keys;
};

const sameTime = (a: Date | null, b: Date | null) => (a === null || b === null ? a === b : a.getTime() === b.getTime());

/** Whether two counted views put an order in the same counters (keysOf would give the same keys). */
const sameCounted = (a: Counted, b: Counted) =>
  a.status === b.status &&
  a.country === b.country &&
  a.currentStages.length === b.currentStages.length &&
  a.currentStages.every((s, i) => s === b.currentStages[i]) &&
  sameTime(a.dueAt, b.dueAt) &&
  sameTime(a.atRiskAt, b.atRiskAt) &&
  sameTime(a.overrunAt, b.overrunAt);

/**
 * The facts of one order's change from `before` to `after` (before is null for a new order):
 * the counters it leaves and enters, the stages it completed, its delivery.
 */
export function orderFacts(
  before: { counted: Counted; state: OrderState } | null,
  after: { counted: Counted; state: OrderState },
): Fact[] {
  const facts: Fact[] = [];
  // Most updates (progress, notes) leave every counted field as it was: no keys to compare.
  if (!before || !sameCounted(before.counted, after.counted)) {
    const delta = new Map<string, number>();
    for (const key of keysOf(before?.counted ?? null)) delta.set(key, (delta.get(key) ?? 0) - 1);
    for (const key of keysOf(after.counted)) delta.set(key, (delta.get(key) ?? 0) + 1);
    for (const [key, n] of delta) if (n) facts.push({ kind: 'count', key, n });
  }

  for (const step of after.state.steps) {
    const old = before?.state.steps.find((s) => s.position === step.position);
    if (step.status !== 'done' || old?.status === 'done' || !step.completedAt) continue;
    const hours = (step.completedAt.getTime() - (step.startedAt ?? step.completedAt).getTime()) / HOUR;
    facts.push({
      kind: 'step_done',
      n: 1,
      key: step.factoryId,
      day: dayOf(step.completedAt),
      hours,
      planned_hours: step.plannedHours,
      on_time: hours <= step.plannedHours,
    });
  }

  const delivered = after.state.deliveredAt;
  if (after.state.status === 'delivered' && before?.state.status !== 'delivered' && delivered) {
    facts.push({
      kind: 'delivered',
      n: 1,
      key: 'network',
      day: dayOf(delivered),
      hours: (delivered.getTime() - after.state.createdAt.getTime()) / HOUR,
      on_time: delivered <= after.state.dueAt,
    });
  }
  return facts;
}

/** Records facts in the writer's transaction: inserts only, so writers never wait on each other. */
export async function recordFacts(tx: Transaction<DB>, facts: Fact[]): Promise<void> {
  if (facts.length) await tx.insertInto('kpi_facts').values(facts).execute();
}
