import { buildAudience, closeAudience } from './e2e.js';
import { rssOf } from './lib/service.js';
import { sleep } from './lib/stats.js';

/**
 * RSS per idle subscribed socket of a server process: its RSS with `count` sockets connected and
 * subscribed, less its RSS before, over `count`. Measured on a fresh process each time, after a
 * settle, so that the figure is the sockets' own and not what earlier work left behind.
 */
export async function bytesPerSocket(pid: number, url: string, customers: string[], count: number, onProgress?: (n: number) => void): Promise<number> {
  await sleep(1000);
  const before = rssOf(pid);
  const audience = await buildAudience(url, customers, count, onProgress);
  await sleep(2000);
  const after = rssOf(pid);
  closeAudience(audience);
  return Math.round((after - before) / (count + 1));
}
