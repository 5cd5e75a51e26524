import { nowMs, sleep } from './stats.js';

export interface OpenLoopResult {
  sent: number;
  seconds: number;
  /** True when the sender could not keep the rate (too many requests waiting). */
  behind: boolean;
}

/**
 * Sends at a fixed rate whatever the replies do (open loop): `send(n)` is called for `n` units
 * every tick. With more than `maxInFlight` calls waiting, the target is not held.
 */
export async function openLoop(
  o: { perSec: number; seconds: number; tickMs?: number; unit?: number; maxInFlight?: number; onTick?: (f: number) => void },
  send: (n: number) => Promise<unknown>,
): Promise<OpenLoopResult> {
  const tick = o.tickMs ?? 5;
  const unit = o.unit ?? 1;
  const maxInFlight = o.maxInFlight ?? 256;
  const start = nowMs();
  let sent = 0;
  let inFlight = 0;
  let behind = false;
  const errors: unknown[] = [];
  const pending = new Set<Promise<unknown>>();
  while (nowMs() - start < o.seconds * 1000) {
    const due = Math.floor(((nowMs() - start) / 1000) * o.perSec) - sent;
    for (let n = due; n > 0; n -= unit) {
      if (inFlight >= maxInFlight) {
        behind = true;
        break;
      }
      const units = Math.min(unit, n);
      sent += units;
      inFlight++;
      const p = send(units)
        .catch((err) => errors.push(err))
        .finally(() => {
          inFlight--;
          pending.delete(p);
        });
      pending.add(p);
    }
    if (behind) break;
    o.onTick?.((nowMs() - start) / (o.seconds * 1000));
    await sleep(tick);
  }
  await Promise.all(pending);
  if (errors.length) throw errors[0];
  return { sent, seconds: (nowMs() - start) / 1000, behind };
}
