import { nowMs } from './stats.js';

/** Told when the measured seconds start and end (bench/lib/cpu.ts reads CPU then). */
export interface Meter {
  start(): void;
  end(): void;
}

export interface LoadResult {
  /** Units of work done per second (events, not requests). */
  perSec: number;
  units: number;
  /** Latency of each call, ms. */
  samples: number[];
  seconds: number;
}

/**
 * Closed-loop load: `workers` loops, each calling `once(worker)` back to back until the time is
 * up. `once` returns how many units (events) the call did. A warm-up runs first, unmeasured.
 */
export async function closedLoop(
  o: { workers: number; seconds: number; warmupSeconds?: number; onTick?: (fraction: number) => void; meter?: Meter },
  once: (worker: number) => Promise<number>,
): Promise<LoadResult> {
  const run = async (seconds: number, record: boolean) => {
    const samples: number[] = [];
    let units = 0;
    if (record) o.meter?.start();
    const start = nowMs();
    const end = start + seconds * 1000;
    const timer = record && o.onTick ? setInterval(() => o.onTick!(Math.min(1, (nowMs() - start) / (seconds * 1000))), 250) : undefined;
    await Promise.all(
      Array.from({ length: o.workers }, async (_, w) => {
        while (nowMs() < end) {
          const t = nowMs();
          const n = await once(w);
          if (record) {
            samples.push(nowMs() - t);
            units += n;
          }
        }
      }),
    );
    clearInterval(timer);
    if (record) o.meter?.end();
    const elapsed = (nowMs() - start) / 1000;
    return { perSec: units / elapsed, units, samples, seconds: elapsed };
  };
  await run(o.warmupSeconds ?? 1, false);
  return run(o.seconds, true);
}
