import type { CpuPerEvent } from './cpu.js';
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

type Metered = LoadResult & { cpu: CpuPerEvent };

/** Two runs of one load as one: their units over their seconds, each party's CPU per unit weighted by units. */
export function pooled(a: Metered, b: Metered): Metered {
  const units = a.units + b.units;
  const seconds = a.seconds + b.seconds;
  const weigh = (x: number | null, y: number | null) =>
    x === null || y === null ? null : Math.round(((x * a.units + y * b.units) / Math.max(1, units)) * 1000) / 1000;
  return {
    perSec: units / seconds,
    units,
    samples: [...a.samples, ...b.samples],
    seconds,
    cpu: { service: weigh(a.cpu.service, b.cpu.service), postgres: weigh(a.cpu.postgres, b.cpu.postgres), client: weigh(a.cpu.client, b.cpu.client)! },
  };
}
