import { ROUTES } from '../world/catalogue.js';
import type { SimulationStats } from './stats.js';

/** How often things happen; each a probability in [0, 1]. */
export interface IncidentRates {
  /** Per order: ops put it on hold during a stage (an engineering query or a material shortage), then resume it. */
  hold: number;
  /** Per order: a factory reports a quality issue with scrap during one of its stages. */
  quality: number;
  /** Per order: ops move a pending step to another factory of the same kind. */
  reroute: number;
  /** Per order: a stage runs far beyond its p90, so the order becomes at risk, then late. */
  slip: number;
  /** Per stage: the factory reports progress between start and completion. */
  progress: number;
  /** Per request: the response is "lost" and the same request is sent again (expects a 200 replay). */
  retry: number;
  /** Per request: two copies are sent at once (expects one 201 and one 200 replay). */
  concurrentDuplicate: number;
}

export const DEFAULT_RATES: IncidentRates = {
  hold: 0.08,
  quality: 0.1,
  reroute: 0.08,
  slip: 0.12,
  progress: 0.5,
  retry: 0.05,
  concurrentDuplicate: 0.02,
};

export interface SimulationOptions {
  baseUrl: string;
  /** An admin JWT: it sets up customers, factories and keys, creates orders and posts ops events. */
  adminToken: string;
  /** Orders to create and drive; Infinity runs until stopped. Default 50. */
  orders?: number;
  /** Time compression: planned hours pass this many times faster. Default 3600 (an hour per second). */
  speed?: number;
  /** Orders driven at once. Default 20. */
  concurrency?: number;
  seed?: number;
  /** Stop after this long, whatever is left. */
  durationMs?: number;
  signal?: AbortSignal;
  onStats?: (stats: SimulationStats) => void;
  statsIntervalMs?: number;
  rates?: Partial<IncidentRates>;
  /** Route templates to draw from (keys of ROUTES). Default: all. */
  templates?: string[];
  /** Factories of each kind to use (listed, or created when missing). Default 3. */
  factoriesPerKind?: number;
  /** Customers to use (listed, or created when missing). Default 5. */
  customers?: number;
  /** Mean gap between new orders in ms. Default: the typical route time over the concurrency. */
  arrivalMs?: number;
  /**
   * Real milliseconds added to every promise. The service projects completion in whole minutes,
   * so under strong compression a promise needs about a minute of real slack not to look at risk
   * from the start. Default 60000.
   */
  promiseBufferMs?: number;
  /** Revoke the run's API keys at the end. Default true. */
  revokeKeys?: boolean;
  /** Per-request timeout; a timed-out request is retried with the same key. Default 30000. */
  requestTimeoutMs?: number;
}

export type ResolvedOptions = Required<Omit<SimulationOptions, 'durationMs' | 'signal' | 'onStats' | 'rates' | 'arrivalMs'>> & {
  durationMs: number | undefined;
  signal: AbortSignal | undefined;
  onStats: ((stats: SimulationStats) => void) | undefined;
  rates: IncidentRates;
  arrivalMs: number | undefined;
};

export function resolveOptions(o: SimulationOptions): ResolvedOptions {
  const rates = { ...DEFAULT_RATES, ...o.rates };
  for (const [name, p] of Object.entries(rates)) {
    if (!(p >= 0 && p <= 1)) throw new Error(`rate ${name} must be within [0, 1], got ${p}`);
  }
  const templates = o.templates ?? Object.keys(ROUTES);
  const unknown = templates.filter((t) => !ROUTES[t]);
  if (unknown.length || !templates.length) throw new Error(`templates must be among ${Object.keys(ROUTES).join(', ')}`);
  const r: ResolvedOptions = {
    baseUrl: o.baseUrl.replace(/\/+$/, ''),
    adminToken: o.adminToken,
    orders: o.orders ?? 50,
    speed: o.speed ?? 3600,
    concurrency: o.concurrency ?? 20,
    seed: o.seed ?? Math.floor(Math.random() * 2 ** 31),
    durationMs: o.durationMs,
    signal: o.signal,
    onStats: o.onStats,
    statsIntervalMs: o.statsIntervalMs ?? 500,
    rates,
    templates,
    factoriesPerKind: o.factoriesPerKind ?? 3,
    customers: o.customers ?? 5,
    arrivalMs: o.arrivalMs,
    promiseBufferMs: o.promiseBufferMs ?? 60_000,
    revokeKeys: o.revokeKeys ?? true,
    requestTimeoutMs: o.requestTimeoutMs ?? 30_000,
  };
  if (!(r.orders >= 0)) throw new Error('orders must be 0 or more');
  if (!(r.speed > 0)) throw new Error('speed must be positive');
  if (!(r.concurrency >= 1)) throw new Error('concurrency must be at least 1');
  if (!(r.factoriesPerKind >= 1 && r.customers >= 1)) throw new Error('factoriesPerKind and customers must be at least 1');
  return r;
}
