import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Kysely } from 'kysely';
import { sql } from 'kysely';
import type { DB } from '../src/db/schema.js';
import type { Http } from './lib/http.js';
import { latency } from './lib/stats.js';
import type { TimerJob, TimerMessage } from './query-timer.js';

export interface QueryFigure {
  p50Ms: number;
  p99Ms: number;
  /** The worst of the runs. */
  maxMs: number;
  /** The answer's size as it came over the wire. */
  wireBytes: number;
}

/** How many pages deep the "later page" of the late list is read. */
const LATER_PAGE = 10;

/**
 * The ops and portal reads, each asked `runs` times in a row over HTTP by an ops client, on the
 * generated world: p50/p99 of the whole request as the client sees it, timed from a process of
 * its own (bench/query-timer.ts).
 */
export async function queries(db: Kysely<DB>, ops: Http, runs: number, onProgress?: (done: number, total: number) => void): Promise<Record<string, QueryFigure>> {
  // The busiest customer and factory of the world: their lists and KPIs are the heaviest.
  const { rows: c } = await sql<{ id: string }>`select customer_id as id from orders group by customer_id order by count(*) desc limit 1`.execute(db);
  const { rows: f } = await sql<{ id: string }>`select factory_id as id from order_steps group by factory_id order by count(*) desc limit 1`.execute(db);
  let later = '/v1/orders?late=true&sort=-lateness&limit=50';
  for (let i = 1; i < LATER_PAGE; i++) {
    const page = await ops.get<{ nextCursor: string | null }>(later);
    if (!page.body.nextCursor) break;
    later = `/v1/orders?late=true&sort=-lateness&limit=50&cursor=${encodeURIComponent(page.body.nextCursor)}`;
  }
  const paths: Record<string, string> = {
    lateFirstPage: '/v1/orders?late=true&sort=-lateness&limit=50',
    // The same page as a browser or a portal asks for it (Accept-Encoding: br), inflated: what
    // compression costs on loopback, where the bytes it saves cost nothing (not among the figures).
    lateFirstPageBrotli: '/v1/orders?late=true&sort=-lateness&limit=50',
    lateLaterPage: later,
    // As the board shows it: worst (due soonest) first.
    atRisk: '/v1/orders?atRisk=true&sort=-lateness&limit=50',
    atRiskByPromiseDate: '/v1/orders?atRisk=true&sort=promisedAt&limit=50',
    customerOrders: `/v1/orders?customerId=${c[0]!.id}&limit=50`,
    opsSummary: '/v1/ops/summary?window=7d',
    factoryPerformance: `/v1/ops/factories/${f[0]!.id}/performance?window=7d`,
  };
  // Asked with an Accept-Encoding: the others go plain.
  const encodings: Record<string, string> = { lateFirstPageBrotli: 'br' };
  const timed = await timeInOwnProcess(
    {
      baseUrl: ops.baseUrl,
      headers: ops.headers,
      queries: Object.entries(paths).map(([name, path]) => ({ name, path, ...(encodings[name] ? { headers: { 'accept-encoding': encodings[name] } } : {}) })),
      runs,
    },
    onProgress,
  );
  const out: Record<string, QueryFigure> = {};
  for (const [name, { samples, wireBytes }] of Object.entries(timed)) {
    const l = latency(samples);
    out[name] = { p50Ms: l.p50Ms, p99Ms: l.p99Ms, maxMs: l.maxMs, wireBytes };
  }
  return out;
}

/** Runs the timing loop in bench/query-timer.ts, a process with a small heap of its own (change 75). */
function timeInOwnProcess(job: TimerJob, onProgress?: (done: number, total: number) => void) {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./query-timer.ts', import.meta.url))], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const total = job.runs * job.queries.length;
  let done = 0;
  return new Promise<Extract<TimerMessage, { kind: 'done' }>['figures']>((resolve, reject) => {
    child.on('message', (m: TimerMessage) => {
      if (m.kind === 'progress') onProgress?.(++done, total);
      else if (m.kind === 'done') resolve(m.figures);
      else reject(new Error(m.message));
    });
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the query timer exited (${code}) before it answered`)));
    child.send(job);
  });
}
