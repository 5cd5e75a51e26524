// The timing loop of the queries figure, in a process of its own (bench/queries.ts starts it).
// The bench process holds the run's fixtures and state (20 MB and more): with 350 KB answers
// arriving back to back, V8 collected its old space every 100-200 ms, and those collections
// (pauses of 3-18 ms, marking steps of up to 12 ms) fell inside the requests being timed. Here
// the heap is a few MB and a collection costs little (change 75).
import { Http } from './lib/http.js';

export interface TimerJob {
  baseUrl: string;
  headers: Record<string, string>;
  /** Each query: its path, and headers of its own (Accept-Encoding). */
  queries: Array<{ name: string; path: string; headers?: Record<string, string> }>;
  runs: number;
}

export type TimerMessage =
  | { kind: 'progress' }
  | { kind: 'done'; figures: Record<string, { samples: number[]; wireBytes: number }> }
  | { kind: 'error'; message: string };

const send = (m: TimerMessage) => new Promise<void>((resolve) => process.send!(m, () => resolve()));

async function time(job: TimerJob) {
  const http = Http.open(job.baseUrl, 1).with(job.headers);
  const figures: Record<string, { samples: number[]; wireBytes: number }> = {};
  try {
    for (const q of job.queries) {
      for (let i = 0; i < Math.ceil(job.runs / 10); i++) await http.timedGet(q.path, q.headers); // warm the caches
      const samples: number[] = [];
      let wireBytes = 0;
      for (let i = 0; i < job.runs; i++) {
        const r = await http.timedGet(q.path, q.headers);
        if (r.status !== 200) throw new Error(`${q.name}: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
        samples.push(r.ms);
        wireBytes = r.bytes;
        await send({ kind: 'progress' });
      }
      figures[q.name] = { samples, wireBytes };
    }
  } finally {
    await http.close();
  }
  return figures;
}

// The bench gone (interrupted), nothing is left to answer: stop rather than keep asking.
process.once('disconnect', () => process.exit(0));
process.once('message', (job: TimerJob) => {
  time(job).then(
    (figures) => send({ kind: 'done', figures }),
    (err: unknown) => send({ kind: 'error', message: err instanceof Error ? err.message : String(err) }),
  ).finally(() => process.disconnect());
});
