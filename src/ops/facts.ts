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
}

export const countedOf = (row: { status: string; current_stages: string[]; customer_country: string }): Counted => ({
  status: row.status,
  currentStages: row.current_stages,
  country: row.customer_country,
});

const keysOf = (c: Counted | null) =>
  c && UNFINISHED.has(c.status)
    ? [`status:${c.status}`, `country:${c.country}`, ...c.currentStages.map((s) => `stage:${s}`)]
    : [];

/**
 * The facts of one order's change from `before` to `after` (before is null for a new order):
 * the counters it leaves and enters, the stages it completed, its delivery.
 */
export function orderFacts(
  before: { counted: Counted; state: OrderState } | null,
  after: { counted: Counted; state: OrderState },
): Fact[] {
  const facts: Fact[] = [];
  const delta = new Map<string, number>();
  for (const key of keysOf(before?.counted ?? null)) delta.set(key, (delta.get(key) ?? 0) - 1);
  for (const key of keysOf(after.counted)) delta.set(key, (delta.get(key) ?? 0) + 1);
  for (const [key, n] of delta) if (n) facts.push({ kind: 'count', key, n });

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
