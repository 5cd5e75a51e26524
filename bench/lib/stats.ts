/** The q-quantile (0..1) of a sample, nearest rank; NaN for an empty sample. */
export function quantile(sorted: number[], q: number): number {
  if (!sorted.length) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

export interface Latency {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  count: number;
}

export function latency(samples: number[]): Latency {
  const s = Float64Array.from(samples).sort();
  const sorted = Array.from(s);
  return { p50Ms: round(quantile(sorted, 0.5)), p99Ms: round(quantile(sorted, 0.99)), maxMs: round(sorted.at(-1) ?? NaN), count: sorted.length };
}

export const round = (x: number, digits = 2) => (Number.isFinite(x) ? Math.round(x * 10 ** digits) / 10 ** digits : x);
export const ratio = (value: number, ceiling: number) => round(value / ceiling, 3);

/** Milliseconds since an arbitrary origin, shared by everything in this process. */
export const nowMs = () => performance.timeOrigin + performance.now();
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
