import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { Random } from '../world/random.js';
import { ApiClient } from './api-client.js';
import { revokeKeys, setUpNetwork, type Network } from './network-setup.js';
import { resolveOptions, type SimulationOptions } from './options.js';
import { OrderDriver, type DriverContext } from './order-driver.js';
import { planOrder, typicalOrderMs } from './order-plan.js';
import { StatsRecorder, type SimulationStats } from './stats.js';

export type { SimulationOptions } from './options.js';
export type { SimulationStats } from './stats.js';

/**
 * Drives a running service through its public API only: sets up customers, factories and their
 * keys as admin, then creates orders at a steady pace, at most `concurrency` at once, and drives
 * each along its route until it is delivered. Resolves with the final counts when every order is
 * done, or when stopped (signal, duration): orders in flight are then left where they are.
 */
export async function runSimulation(options: SimulationOptions): Promise<SimulationStats> {
  const o = resolveOptions(options);
  const stop = new AbortController();
  const signal = AbortSignal.any(o.signal ? [stop.signal, o.signal] : [stop.signal]);
  const timer =
    o.durationMs !== undefined ? setTimeout(() => stop.abort(new Error('duration reached')), o.durationMs) : undefined;
  const stats = new StatsRecorder(o.orders);
  const api = new ApiClient(o.baseUrl, stats, signal, o.requestTimeoutMs);
  const admin = { token: o.adminToken };
  const runTag = randomBytes(4).toString('hex');
  const ticker = o.onStats ? setInterval(() => o.onStats!(stats.snapshot()), o.statsIntervalMs) : undefined;
  let network: Network | undefined;
  try {
    try {
      network = await setUpNetwork(api, admin, { customers: o.customers, factoriesPerKind: o.factoriesPerKind, runTag });
    } catch (err) {
      if (signal.aborted) return stats.snapshot();
      throw err;
    }
    const ctx: DriverContext = { api, stats, network, ops: admin, rates: o.rates, runTag, signal };
    const pace = new Random(o.seed);
    const meanGapMs = o.arrivalMs ?? Math.min(5_000, typicalOrderMs(o.speed, o.templates) / o.concurrency);
    const active = new Set<Promise<void>>();
    try {
      for (let i = 0; i < o.orders && !signal.aborted; i++) {
        while (active.size >= o.concurrency) await Promise.race(active);
        // Orders arrive as a Poisson stream; the first few quickly, so that a board fills at once.
        const gapMs = i < Math.ceil(o.concurrency / 4) ? meanGapMs / 4 : meanGapMs;
        if (i > 0) await delay(Math.min(3 * gapMs, -Math.log(1 - pace.float()) * gapMs), undefined, { signal });
        // Each order draws from its own stream: its plan does not depend on how others interleave.
        const rng = new Random((o.seed ^ Math.imul(i + 1, 0x9e3779b1)) | 0);
        const plan = planOrder(rng, i, network, {
          speed: o.speed,
          rates: o.rates,
          templates: o.templates,
          promiseBufferMs: o.promiseBufferMs,
        });
        stats.orders.active++;
        const driving: Promise<void> = new OrderDriver(ctx, plan, rng).run().then((outcome) => {
          stats.orders.active--;
          if (outcome === 'delivered') stats.orders.delivered++;
          else if (outcome === 'abandoned') stats.orders.abandoned++;
          else stats.orders.stopped++;
          active.delete(driving);
        });
        active.add(driving);
      }
    } catch (err) {
      if (!signal.aborted) throw err;
    }
    await Promise.all(active);
    return stats.snapshot();
  } finally {
    clearTimeout(timer);
    clearInterval(ticker);
    if (network && o.revokeKeys) {
      // Its own client: the run's signal may be aborted already, and cleanup is not part of the counts.
      await revokeKeys(new ApiClient(o.baseUrl, new StatsRecorder(0), AbortSignal.timeout(15_000), 5_000), admin, network);
    }
    o.onStats?.(stats.snapshot());
  }
}
