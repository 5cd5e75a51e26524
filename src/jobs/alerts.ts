import { randomUUID } from 'node:crypto';
import { sql, type Kysely, type SqlBool } from 'kysely';
import type { Database } from '../db/database.js';
import type { DB } from '../db/schema.js';
import { insertEvents, type NewEvent } from '../events/repository.js';
import { flagsAt, projectedAt } from '../orders/projection.js';
import { loadOrders, lockOrdersForWrite } from '../orders/repository.js';

/** Orders of each kind (late, at risk) looked at per pass: one short transaction each. */
const PASS = 100;

// (class, id) of the two-key advisory lock that lets one instance at a time raise alerts.
const ALERTS_LOCK = [74, 2] as const;
const unfinished = sql<SqlBool>`status in ('open', 'on_hold', 'shipped')`;

/**
 * Where a drain of the alert backlog stands: the candidates of each kind before these instants
 * were looked at by earlier passes of the same drain (see scheduleAlerts).
 */
export interface AlertCursor {
  lateFrom?: Date;
  atRiskFrom?: Date;
}

/**
 * The orders that became at risk and were not alerted yet, from where the drain stands, in order.
 * Read from orders_at_risk_unalerted, which holds the unalerted ones only: offered the due date as
 * a range of orders_unfinished_at_risk_due, the planner walked every at-risk order already alerted
 * instead (on 2,000,000 orders 48,240 of them, 26,000 buffers and 355 ms, at the start of every
 * tick of every instance: BENCHMARKS.md change 68). `+ interval '0'` keeps that index out of its choices.
 */
export const atRiskCandidates = (db: Kysely<DB>, now: Date, limit: number, from: AlertCursor) =>
  db
    .selectFrom('orders')
    .select(['id', 'at_risk_at'])
    .where(unfinished)
    .where('at_risk_alerted', '=', false)
    .where('at_risk_at', '<', now)
    .where(sql<Date>`(due_at + interval '0')`, '>=', now)
    .$if(from.atRiskFrom !== undefined, (q) => q.where('at_risk_at', '>=', from.atRiskFrom!))
    .orderBy('at_risk_at')
    .limit(limit);

/**
 * Raises the alerts that time alone causes: `became_late` when an order passes its promised date
 * undelivered, `became_at_risk` when its projected completion passes the promise. Each once per
 * transition: a flag on the order remembers it (the at-risk flag is cleared when a later event
 * makes the order safe again). Every instance runs it; the advisory lock makes one act at a time.
 */
export async function raiseTimeAlerts(
  database: Database,
  now = new Date(),
  limit = PASS,
  from: AlertCursor = {},
): Promise<{ raised: number; next: AlertCursor }> {
  return database.db.transaction().execute(async (tx) => {
    const none = { raised: 0, next: from };
    const { rows } = await sql<{ locked: boolean }>`select pg_try_advisory_xact_lock(${ALERTS_LOCK[0]}, ${ALERTS_LOCK[1]}) as locked`.execute(tx);
    if (!rows[0]?.locked) return none;
    // A pass starts where the drain's last one stopped: the partial indexes below keep the entries
    // of orders alerted by earlier passes until vacuum, and walking them again on every pass cost
    // 56 ms and 32,000 buffers per pass while a fresh 2,000,000-order world drained (BENCHMARKS.md).
    const late = await tx
      .selectFrom('orders')
      .select(['id', 'due_at'])
      .where(unfinished)
      .where('late_alerted', '=', false)
      .where('due_at', '<', now)
      // Paused by the customer before its due date: not late (flagsAt), so never a candidate,
      // or such orders would fill every pass at the head of this list and starve the others.
      .where(sql<SqlBool>`(status = 'on_hold' and hold_cause = 'engineering_query' and held_at <= due_at) is not true`)
      .$if(from.lateFrom !== undefined, (q) => q.where('due_at', '>=', from.lateFrom!))
      .orderBy('due_at')
      .limit(limit)
      .execute();
    const atRisk = await atRiskCandidates(tx, now, limit, from).execute();
    // Ties stay in: the next pass starts at the last instant read, not after it.
    const next: AlertCursor = { lateFrom: late.at(-1)?.due_at ?? from.lateFrom, atRiskFrom: atRisk.at(-1)?.at_risk_at ?? from.atRiskFrom };
    const ids = [...new Set([...late, ...atRisk].map((r) => r.id))];
    if (!ids.length) return none;
    await lockOrdersForWrite(tx, ids);
    const orders = await loadOrders(tx, ids);
    const events: NewEvent[] = [];
    for (const { row } of orders.values()) {
      // Judged again under the lock: an event may have changed the order since the query above.
      if (!['open', 'on_hold', 'shipped'].includes(row.status)) continue;
      const flags = flagsAt(
        { status: row.status, dueAt: row.due_at, deliveredAt: row.delivered_at, atRiskAt: row.at_risk_at, holdCause: row.hold_cause, heldAt: row.held_at },
        now,
      );
      const type = flags.late && !row.late_alerted ? 'became_late' : flags.atRisk && !row.at_risk_alerted ? 'became_at_risk' : undefined;
      if (!type) continue;
      const seq = row.last_seq + 1;
      events.push({
        id: randomUUID(),
        orderId: row.id,
        customerId: row.customer_id,
        seq,
        type,
        stage: null,
        factoryId: null,
        actor: 'system',
        occurredAt: now,
        data: {
          promisedAt: row.promised_at.toISOString(),
          dueAt: row.due_at.toISOString(),
          projectedAt: projectedAt(
            { status: row.status, deliveredAt: null, projectionLeadMinutes: row.projection_lead_minutes, projectionFloorAt: row.projection_floor_at },
            now,
          )?.toISOString(),
          currentStages: row.current_stages,
          ...(type === 'became_late' ? { lateByMinutes: flags.lateByMinutes } : {}),
        },
      });
    }
    if (!events.length) return { raised: 0, next };
    // One statement for every order of the pass: a statement per order kept the transaction open
    // for a second at 1,000 orders, and every stream waits for the oldest running transaction.
    await sql`
      update orders o set last_seq = v.seq, last_event_at = ${now}, updated_at = ${now},
        late_alerted = o.late_alerted or v.late, at_risk_alerted = true
      from unnest(${events.map((e) => e.orderId)}::uuid[], ${events.map((e) => e.seq)}::int[], ${events.map((e) => e.type === 'became_late')}::bool[])
        as v(id, seq, late)
      where o.id = v.id`.execute(tx);
    await insertEvents(tx, events);
    return { raised: events.length, next };
  });
}

/**
 * Raises what time alone has caused since the last pass: short passes until none is left to
 * announce (a backlog after an outage or a bulk load), at most 100 of them so that one call ends.
 * Each call starts from the beginning: an order can become late or at risk at an instant a drain
 * had already passed. The alerts raised.
 */
export async function drainTimeAlerts(database: Database, afterRaise: () => void = () => {}): Promise<number> {
  let from: AlertCursor = {};
  let total = 0;
  for (let pass = 0; pass < 100; pass++) {
    const { raised, next } = await raiseTimeAlerts(database, new Date(), PASS, from);
    if (!raised) break;
    total += raised;
    from = next;
    afterRaise();
  }
  return total;
}

/** Runs the alert drain every `everyMs` on this instance; returns a stop function. */
export function scheduleAlerts(database: Database, everyMs: number, afterRaise: () => void, onError: (err: unknown) => void) {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    drainTimeAlerts(database, afterRaise)
      .catch(onError)
      .finally(() => (running = false));
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
