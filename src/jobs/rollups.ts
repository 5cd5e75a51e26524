import type { Database } from '../db/database.js';
import { foldFacts } from '../ops/rollups.js';

/** Folds the KPI facts into their rollups every `everyMs` (one instance at a time); returns a stop function. */
export function scheduleRollups(database: Database, everyMs: number, onError: (err: unknown) => void) {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    (async () => {
      // Passes of up to 20,000 facts, until the backlog is folded.
      while ((await foldFacts(database.db)) === 20_000);
    })()
      .catch(onError)
      .finally(() => (running = false));
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
