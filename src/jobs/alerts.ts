import { randomUUID } from 'node:crypto';
import { sql, type SqlBool } from 'kysely';
import type { Database } from '../db/database.js';
import { insertEvents, type NewEvent } from '../events/repository.js';
import { flagsAt, projectedAt } from '../orders/projection.js';
import { loadOrders, lockOrdersForWrite } from '../orders/repository.js';

// (class, id) of the two-key advisory lock that lets one instance at a time raise alerts.
const ALERTS_LOCK = [74, 2] as const;
const unfinished = sql<SqlBool>`status in ('open', 'on_hold', 'shipped')`;

/**
 * Raises the alerts that time alone causes: `became_late` when an order passes its promised date
 * undelivered, `became_at_risk` when its projected completion passes the promise. Each once per
 * transition: a flag on the order remembers it (the at-risk flag is cleared when a later event
 * makes the order safe again). Every instance runs it; the advisory lock makes one act at a time.
 */
export async function raiseTimeAlerts(database: Database, now = new Date(), limit = 500): Promise<number> {
  return database.db.transaction().execute(async (tx) => {
    const { rows } = await sql<{ locked: boolean }>`select pg_try_advisory_xact_lock(${ALERTS_LOCK[0]}, ${ALERTS_LOCK[1]}) as locked`.execute(tx);
    if (!rows[0]?.locked) return 0;
    const late = await tx
      .selectFrom('orders')
      .select('id')
      .where(unfinished)
      .where('late_alerted', '=', false)
      .where('due_at', '<', now)
      .orderBy('due_at')
      .limit(limit)
      .execute();
    const atRisk = await tx
      .selectFrom('orders')
      .select('id')
      .where(unfinished)
      .where('at_risk_alerted', '=', false)
      .where('at_risk_at', '<', now)
      .where('due_at', '>=', now)
      .orderBy('at_risk_at')
      .limit(limit)
      .execute();
    const ids = [...new Set([...late, ...atRisk].map((r) => r.id))];
    if (!ids.length) return 0;
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
      await tx
        .updateTable('orders')
        .set({
          last_seq: seq,
          last_event_at: now,
          updated_at: now,
          ...(type === 'became_late' ? { late_alerted: true, at_risk_alerted: true } : { at_risk_alerted: true }),
        })
        .where('id', '=', row.id)
        .execute();
    }
    await insertEvents(tx, events);
    return events.length;
  });
}

/** Runs the alert pass every `everyMs` on this instance; returns a stop function. */
export function scheduleAlerts(database: Database, everyMs: number, afterRaise: () => void, onError: (err: unknown) => void) {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    (async () => {
      // Passes of up to 500 orders, until none is left to announce.
      for (let n = await raiseTimeAlerts(database); n > 0; n = n === 500 ? await raiseTimeAlerts(database) : 0) afterRaise();
    })()
      .catch(onError)
      .finally(() => (running = false));
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
