import { sql } from 'kysely';
import type { Database } from '../db/database.js';

/** The advisory lock key of the retention job: one instance at a time does the deleting. */
const RETENTION_LOCK = 7_400_001;

/**
 * Forgets idempotency keys older than the retention window (at least 24 h, so a factory system's
 * retries within a day always find their key). Runs on every instance, acts on one at a time.
 */
export async function purgeIdempotencyKeys(database: Database, retentionHours: number): Promise<number> {
  return database.db.transaction().execute(async (tx) => {
    const { rows } = await sql<{ locked: boolean }>`select pg_try_advisory_xact_lock(${RETENTION_LOCK}) as locked`.execute(tx);
    if (!rows[0]?.locked) return 0;
    const res = await tx
      .deleteFrom('idempotency_keys')
      .where('created_at', '<', sql<Date>`now() - make_interval(hours => ${retentionHours})`)
      .executeTakeFirst();
    return Number(res.numDeletedRows);
  });
}

/** Starts the periodic purge; returns a stop function. */
export function scheduleRetention(database: Database, retentionHours: number, onError: (err: unknown) => void, everyMs = 10 * 60_000) {
  const timer = setInterval(() => purgeIdempotencyKeys(database, retentionHours).catch(onError), everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
