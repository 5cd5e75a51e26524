import { buildAudience, closeAudience, type Audience } from './e2e.js';
import { rssOf } from './lib/service.js';
import { sleep } from './lib/stats.js';

/** The lowest RSS seen over a while: the floor after the garbage collector ran, not a peak before it. */
async function rssFloor(pid: number, ms: number): Promise<number> {
  let low = Infinity;
  for (const end = Date.now() + ms; Date.now() < end; await sleep(100)) low = Math.min(low, rssOf(pid));
  return low;
}

/** Least-squares slope of y over x. */
function slope(points: Array<[number, number]>): number {
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  const cov = points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0);
  const vx = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  return cov / vx;
}

const STEPS = 4;

/**
 * RSS per idle subscribed socket of a server process (a fresh one, warmed by one step of
 * sockets that stay): sockets are connected and subscribed in four more steps, the RSS floor is read before and after each, and the figure is the
 * slope of RSS over sockets. One reading would be at the mercy of a heap growth step; a slope
 * over five is not.
 */
export async function bytesPerSocket(
  pid: number,
  url: string,
  customers: string[],
  o: { count: number; settleMs: number },
  onProgress?: (n: number) => void,
): Promise<number> {
  const { count, settleMs } = o;
  const per = Math.ceil(count / STEPS);
  // A warm-up step first, which stays connected: the collector sizes its young generation in one
  // step of up to tens of MB when a process first meets this load, and whether that step fell
  // inside the measured ones differed between two builds of the same code (BENCHMARKS.md, round
  // 7). Closed again, its sockets would leave freed memory for the measured ones to reuse. What
  // is measured is what each further socket costs a process already holding some.
  const audiences: Audience[] = [await buildAudience(url, customers, per)];
  const points: Array<[number, number]> = [[0, await rssFloor(pid, settleMs)]];
  for (let i = 1; i <= STEPS; i++) {
    audiences.push(await buildAudience(url, customers, per, (d) => onProgress?.((i - 1) * per + d)));
    points.push([i * (per + 1), await rssFloor(pid, settleMs)]);
  }
  audiences.forEach(closeAudience);
  return Math.round(slope(points));
}
