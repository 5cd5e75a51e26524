import type { CpuPerEvent } from './cpu.js';
import type { Machine } from './machine.js';
import type { Scale } from './options.js';

/** A latency's figures, in ms. */
export interface Span {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** A fixed rate of single posts: held or not, what was sent, and the posts' own latency. */
export interface RateFigures {
  held: boolean;
  sentPerSec: number;
  postP50Ms: number;
  postP99Ms: number;
  /** CPU per post (its deliveries included) of the service, the cluster and the bench: a diagnosis. */
  cpuMsPerPost?: CpuPerEvent;
}

type Ceiling = { ceilingBeforeAfter?: [number, number] };

/** The JSON written by --out: the keys of issue #6, for other tools to read. */
export interface BenchResult {
  // Null where a measurement was left out (--only, --skip-startup).
  ingest: {
    // cpuMsPerEvent: where the CPU went (bench/lib/cpu.ts); not among the keys, a diagnosis.
    // eventsPerTransaction: the posts the service wrote per transaction (a diagnosis, like cpu).
    // ceilingBeforeAfter: the ceiling's two halves, before and after the service's run (pooled
    // into ceilingEventsPerSec).
    single: { eventsPerSec: number; p50Ms: number; p99Ms: number; ceilingEventsPerSec: number; ratio: number; eventsPerTransaction?: number } & Ceiling & Cpu;
    batch: { eventsPerSec: number; ceilingEventsPerSec: number; ratio: number } & Ceiling & Cpu;
  } | null;
  e2e: {
    p50Ms: number;
    p99Ms: number;
    maxMs: number;
    heldDeliveriesPerSec: number;
    /** The service's rungs judged by send → receipt instead of recorded → receipt (bench/e2e.ts heldRate). */
    heldBySendDeliveriesPerSec?: number;
    ceilingDeliveriesPerSec: number;
    ratio: number;
    /**
     * What p50Ms and the rest are measured from: `commit`, the commit timestamp Postgres kept for
     * the event's transaction (track_commit_timestamp on); `transactionStart`, its recordedAt.
     */
    basis?: 'commit' | 'transactionStart';
    /** The same deliveries from the event's recordedAt, the start of its transaction. */
    recordedToReceipt?: Span;
    /** From the commit to the arrival of the post's own answer (basis `commit` only). */
    commitToAnswer?: Span;
    /** The same deliveries from each post's send. */
    sendToReceipt?: Span;
    /** Whether the fixed rate was held, and the posts' own send-to-answer latency. */
    fixedRate?: RateFigures;
    /** The same for the unmeasured warm-up before it (one post per order, on a fresh service). */
    warmup?: RateFigures & { rest?: { orders: number; concurrency: number } };
  } | null;
  resume: { events: number; ms: number } | null;
  memory: { bytesPerSocket: number; ceilingBytesPerSocket: number } | null;
  // wireBytes: the answer's size on the wire (a diagnosis, like cpu).
  queries: Record<string, { p50Ms: number; p99Ms: number; maxMs?: number; wireBytes?: number }> | null;
  startup: { embeddedMs: number | null; postgresMs: number } | null;
  machine: Machine;
  scale: Scale & { world: Record<string, number> };
}

type Cpu = { cpuMsPerEvent?: CpuPerEvent; ceilingCpuMsPerEvent?: CpuPerEvent };

const TARGETS = {
  single: 'ratio >= 0.60',
  batch: '>= 40,000/s and ratio >= 0.75',
  e2e: 'p50 <= 5 ms, p99 <= 50 ms; ratio >= 0.80',
  resume: '10,000 in <= 1,000 ms',
  memory: '<= 20 KB per socket',
  lists: 'p99 <= 20 ms',
  summaries: 'p99 <= 50 ms',
  startup: '<= 10 s embedded, <= 1 s real',
};

export const emptyResult = (machine: Machine, scale: Scale): BenchResult => ({
  ingest: null,
  e2e: null,
  resume: null,
  memory: null,
  queries: null,
  startup: null,
  machine,
  scale: { ...scale, world: {} },
});

const n = (x: number | null) =>
  x === null ? '-' : Number.isInteger(x) ? x.toLocaleString('en-US') : x.toLocaleString('en-US', { maximumFractionDigits: 2 });

/** A ratio to its ceiling, to the thousandth: rounded to two places, 0.796 would print as 0.8, on a target of 0.80. */
const r3 = (x: number | null) => (x === null ? '-' : x.toFixed(3));

export const cpuText = (c?: CpuPerEvent) =>
  c ? [c.service, c.postgres, c.client].map((x) => (x === null ? '-' : x.toFixed(3))).join(' / ') : '';

/** The table printed at the end of a run: figure, ceiling, ratio, target. */
export function table(r: BenchResult): string {
  const rows: string[][] = [['figure', 'value', 'ceiling (same run)', 'ratio', 'target']];
  if (r.ingest) {
    const s = r.ingest.single;
    rows.push(['ingest.single events/s', n(s.eventsPerSec), n(s.ceilingEventsPerSec), r3(s.ratio), TARGETS.single]);
    rows.push(['ingest.single p50 / p99 ms', `${n(s.p50Ms)} / ${n(s.p99Ms)}`, '', '', '']);
    rows.push(['ingest.single CPU ms/event svc / pg / bench', cpuText(s.cpuMsPerEvent), cpuText(s.ceilingCpuMsPerEvent), '', '']);
    const b = r.ingest.batch;
    rows.push(['ingest.batch events/s', n(b.eventsPerSec), n(b.ceilingEventsPerSec), r3(b.ratio), TARGETS.batch]);
    rows.push(['ingest.batch CPU ms/event svc / pg / bench', cpuText(b.cpuMsPerEvent), cpuText(b.ceilingCpuMsPerEvent), '', '']);
  }
  const e = r.e2e;
  if (e) {
    rows.push([
      `e2e ${e.basis === 'commit' ? 'commit' : 'recorded'}→receipt p50 / p99 / max ms @${n(r.scale.e2eRate)} ev/s`,
      `${n(e.p50Ms)} / ${n(e.p99Ms)} / ${n(e.maxMs)}`,
      '',
      '',
      TARGETS.e2e,
    ]);
    const span = (label: string, x?: Span) => x && rows.push([`e2e ${label}: p50 / p99 / max ms`, `${n(x.p50Ms)} / ${n(x.p99Ms)} / ${n(x.maxMs)}`, '', '', '']);
    if (e.basis === 'commit') {
      span('commit→the post\'s answer', e.commitToAnswer);
      span('recorded→receipt', e.recordedToReceipt);
    }
    span('from the send', e.sendToReceipt);
    rows.push(["e2e deliveries/s held (p99 from the transaction's start)", n(e.heldDeliveriesPerSec), n(e.ceilingDeliveriesPerSec), r3(e.ratio), '']);
    if (e.heldBySendDeliveriesPerSec !== undefined) {
      const bySend = e.heldBySendDeliveriesPerSec;
      rows.push(['e2e deliveries/s held, p99 from the send', n(bySend), n(e.ceilingDeliveriesPerSec), r3(bySend / e.ceilingDeliveriesPerSec), '']);
    }
  }
  if (r.resume) rows.push([`resume ${n(r.resume.events)} events ms`, n(r.resume.ms), '', '', TARGETS.resume]);
  const m = r.memory;
  if (m)
    rows.push([
      'memory bytes/socket',
      n(m.bytesPerSocket),
      n(m.ceilingBytesPerSocket),
      n(Math.round((m.bytesPerSocket / m.ceilingBytesPerSocket) * 100) / 100),
      TARGETS.memory,
    ]);
  for (const [name, q] of Object.entries(r.queries ?? {})) {
    const size = q.wireBytes === undefined ? '' : ` (${n(Math.round(q.wireBytes / 1024))} KB)`;
    rows.push([
      `queries.${name}${size} p50 / p99 / max ms`,
      `${n(q.p50Ms)} / ${n(q.p99Ms)} / ${n(q.maxMs ?? NaN)}`,
      '',
      '',
      // The compressed page is a diagnosis beside the figures, with no target of its own.
      /Brotli$/.test(name) ? '' : /summary|performance/i.test(name) ? TARGETS.summaries : TARGETS.lists,
    ]);
  }
  if (r.startup)
    rows.push(['startup embedded / real ms', `${n(r.startup.embeddedMs)} / ${n(r.startup.postgresMs)}`, '', '', TARGETS.startup]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const line = (row: string[]) => row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const mc = r.machine;
  return [
    `orderstream bench (${r.scale.quick ? 'quick' : 'full'}, world ${r.scale.worldSize}: ${n(r.scale.world.orders ?? 0)} orders) on ${mc.cpus} x ${mc.cpuModel}, ${mc.memoryGiB} GiB, Node ${mc.node}, PostgreSQL ${mc.postgres}`,
    line(rows[0]!),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...rows.slice(1).map(line),
  ].join('\n');
}
