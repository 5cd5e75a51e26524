// npm run bench [-- --quick] [--out FILE]: every figure of issue #6 next to its ceiling, measured
// in the same run on this machine, with the built service in processes of its own.
import { writeFileSync } from 'node:fs';
import { sql, type Kysely } from 'kysely';
import { openDatabase } from '../src/db/database.js';
import type { DB } from '../src/db/schema.js';
import { drainTimeAlerts } from '../src/jobs/alerts.js';
import { pgIngestCeiling } from './ceilings/pg-ingest.js';
import { startRawSocketIo } from './ceilings/raw-socketio.js';
import { buildAudience, closeAudience, fixedRate, heldRate, rawEmitter, serviceEmitter, type HeldRate } from './e2e.js';
import { ingestBatch, ingestSingle } from './ingest.js';
import { CpuMeter, postmasterOf } from './lib/cpu.js';
import { createBenchDatabase, type BenchDatabase } from './lib/database.js';
import { createFixtures } from './lib/fixtures.js';
import { pooled } from './lib/load.js';
import { Http } from './lib/http.js';
import { describeMachine } from './lib/machine.js';
import { parseOptions, type Measurement } from './lib/options.js';
import { Progress } from './lib/progress.js';
import { cpuText, emptyResult, table, type BenchResult } from './lib/report.js';
import { buildService, countersOf, freePort, startService, type ServiceProcess } from './lib/service.js';
import { latency, ratio, round, type Latency } from './lib/stats.js';
import { bytesPerSocket } from './memory.js';
import { queries } from './queries.js';
import { resume } from './resume.js';
import { startupEmbedded, startupPostgres } from './startup.js';
import { loadWorld } from './world.js';

const options = parseOptions(process.argv.slice(2));
if (!options) process.exit(0);
const { scale } = options;
const progress = new Progress();
const FACTORIES = Math.max(scale.concurrency, scale.batchConcurrency);
const ORDERS_PER_FACTORY = 125;

let bench: BenchDatabase | undefined;
let service: ServiceProcess | undefined;
const started = Date.now();

// The service always comes back on the same port, so one keep-alive pool serves the whole run.
const port = freePort();
const http = Http.open(`http://127.0.0.1:${port}`, 64);

/** Runs `fn` with a fresh service process on the bench database (or as `env` says), stopped afterwards. */
async function withService<T>(fn: (s: ServiceProcess) => Promise<T>, env: Record<string, string> = {}): Promise<T> {
  service = await startService({ DATABASE_URL: bench!.url, DATABASE_POOL_SIZE: '16', ...env }, port, options!.profileDir);
  try {
    return await fn(service);
  } finally {
    await service.stop();
    service = undefined;
  }
}

const has = (m: Measurement) => options!.only.has(m);

/** The queries figure on the world in `db`, asked through the service by the fixtures' ops client. */
function queriesWithProgress(db: Kysely<DB>, ops: Http) {
  progress.step('queries on the world', 1);
  return queries(db, ops, scale.queryRuns, (d, t) => {
    if (d === 1) progress.step('queries on the world', t);
    progress.update(d);
  });
}
const tick = (f: number) => progress.update(Math.round(f * 100));
/** The bench database's cluster's postmaster, if it runs on this machine (for CpuMeter). */
const postmasterPid = async () => postmasterOf((await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(bench!.database.db)).rows[0]!.pid);

async function main(): Promise<BenchResult> {
  progress.step('build (npm run build)', 1);
  await buildService();
  bench = await createBenchDatabase(options!.databaseUrl);
  const db = bench.database.db;
  const result = emptyResult(describeMachine(bench.version), scale);

  if (has('queries') && !options!.worldUrl) {
    let phase = '';
    const world = await loadWorld(db, scale.worldSize, options!.seed, (p, done, total) => {
      if (p !== phase) progress.step(`world ${scale.worldSize}: ${(phase = p)}`, total);
      progress.update(done);
    });
    result.scale.world = {
      orders: world.orders,
      events: world.events,
      customers: world.customers,
      factories: world.factories,
      loadMs: world.ms,
    };
  }

  const f = await withService(() =>
    createFixtures(http, { customers: scale.customers, factories: FACTORIES, ordersPerFactory: ORDERS_PER_FACTORY }, (d, t) => {
      if (d === 1) progress.step('fixtures (through the API)', t);
      progress.update(d);
    }),
  );

  if (has('ingest')) {
    const byWorker = f.factories.map((x) => x.orders);
    // Where the CPU goes, per event: the service, the (local) cluster, this process.
    const postmaster = await postmasterPid();
    const metered = async <T extends { units: number }>(meter: CpuMeter, run: (m: CpuMeter) => Promise<T>) => {
      await bench!.vacuum();
      const r = await run(meter);
      return { ...r, cpu: meter.perEvent(r.units) };
    };
    // Each ceiling runs before the service's run and again after it, pooled: a machine whose
    // speed drifts during the run (these cores are shared) moves both sides of a ratio alike.
    const ceilings = async (when: string) => {
      progress.step(`ceiling: node-pg one event (${when})`, 100);
      const one = await metered(new CpuMeter(undefined, postmaster), (meter) =>
        pgIngestCeiling(bench!.url, byWorker.slice(0, scale.concurrency), { perTransaction: 1, seconds: scale.seconds / 2, onTick: tick, meter }),
      );
      progress.step(`ceiling: node-pg ${scale.batchSize} events (${when})`, 100);
      const many = await metered(new CpuMeter(undefined, postmaster), (meter) =>
        pgIngestCeiling(bench!.url, byWorker.slice(0, scale.batchConcurrency), { perTransaction: scale.batchSize, seconds: scale.seconds / 2, onTick: tick, meter }),
      );
      return [one, many] as const;
    };
    const [singleBefore, batchBefore] = await ceilings('before');
    const [single, batch] = await withService(async (s) => {
      progress.step('ingest.single', 100);
      // How many posts a transaction took (the queue's groups, src/events/append-queue.ts).
      const counts = () => countersOf(s.baseUrl, ['orderstream_events_accepted_total', 'orderstream_append_transactions_total']);
      const before = await counts();
      const one = await metered(new CpuMeter(s.pid, postmaster), (meter) =>
        ingestSingle(f.factories.slice(0, scale.concurrency), { seconds: scale.seconds, onTick: tick, meter }),
      );
      const after = await counts();
      progress.log(`ingest.single: ${after[0]! - before[0]!} events in ${after[1]! - before[1]!} transactions (warm-up included)`);
      const eventsPerTransaction = round((after[0]! - before[0]!) / (after[1]! - before[1]!), 2);
      progress.step('ingest.batch', 100);
      const many = await metered(new CpuMeter(s.pid, postmaster), (meter) =>
        ingestBatch(f.factories.slice(0, scale.batchConcurrency), {
          size: scale.batchSize,
          seconds: scale.seconds,
          onTick: tick,
          meter,
        }),
      );
      return [{ ...one, eventsPerTransaction }, many];
    });
    const [singleAfter, batchAfter] = await ceilings('after');
    const ceilSingle = pooled(singleBefore, singleAfter);
    const ceilBatch = pooled(batchBefore, batchAfter);
    const singleHalves: [number, number] = [round(singleBefore.perSec, 0), round(singleAfter.perSec, 0)];
    const batchHalves: [number, number] = [round(batchBefore.perSec, 0), round(batchAfter.perSec, 0)];
    progress.log(
      `ingest ceilings before / after the service's run, events/s: one event ${singleHalves.join(' / ')}, ` +
        `${scale.batchSize} events ${batchHalves.join(' / ')}`,
    );
    const l = latency(single.samples);
    result.ingest = {
      single: {
        eventsPerSec: round(single.perSec, 0),
        p50Ms: l.p50Ms,
        p99Ms: l.p99Ms,
        ceilingEventsPerSec: round(ceilSingle.perSec, 0),
        ceilingBeforeAfter: singleHalves,
        ratio: ratio(single.perSec, ceilSingle.perSec),
        cpuMsPerEvent: single.cpu,
        ceilingCpuMsPerEvent: ceilSingle.cpu,
        eventsPerTransaction: single.eventsPerTransaction,
      },
      batch: {
        eventsPerSec: round(batch.perSec, 0),
        ceilingEventsPerSec: round(ceilBatch.perSec, 0),
        ceilingBeforeAfter: batchHalves,
        ratio: ratio(batch.perSec, ceilBatch.perSec),
        cpuMsPerEvent: batch.cpu,
        ceilingCpuMsPerEvent: ceilBatch.cpu,
      },
    };
  }

  if (has('queries') && options!.worldUrl) {
    // The world of --world-url, with a service of its own on it. The ingest phase before it leaves
    // the bench's cluster a checkpoint to write: round 24, it ran through the whole queries phase.
    await bench!.checkpoint();
    const world = await openDatabase({ url: options!.worldUrl, poolSize: 2, statementTimeoutMs: 600_000 });
    try {
      // A world that sat without a service gathered the alerts its orders' at-risk and due instants
      // called for meanwhile; a fresh service's first ticks would raise them inside the timed
      // requests (change 81). With a service always on it, as in production, they are raised
      // within a tick: catch them up the same way first.
      let caughtUp = 0;
      let raised: number;
      while ((raised = await drainTimeAlerts(world)) > 0) caughtUp += raised;
      progress.log(`world: ${caughtUp} time alerts caught up before the queries`);
      const { rows } = await sql<{ orders: number; customers: number; factories: number }>`
        select (select count(*)::int from orders) as orders, (select count(*)::int from customers) as customers,
               (select count(*)::int from factories) as factories`.execute(world.db);
      result.scale.world = { ...rows[0]! };
      result.scale.worldSize = 'loaded';
      result.queries = await withService(() => queriesWithProgress(world.db, f.ops), { DATABASE_URL: options!.worldUrl! });
    } finally {
      await world.close();
    }
  }

  if ((has('queries') && !options!.worldUrl) || has('e2e') || has('resume')) {
    await withService(async (s) => {
      if (has('queries') && !options!.worldUrl) {
        await bench!.vacuum();
        result.queries = await queriesWithProgress(db, f.ops);
      }
      if (has('e2e')) {
        progress.step(`e2e: ${scale.sockets} sockets`, scale.sockets + 1);
        const audience = await buildAudience(s.baseUrl, f.customers, scale.sockets, (d) => progress.update(d));
        progress.step(`e2e: ${scale.e2eRate} events/s`, 100);
        await bench!.vacuum();
        const fixed = await fixedRate(f, audience, {
          perSec: scale.e2eRate,
          seconds: scale.seconds,
          onTick: tick,
          meter: new CpuMeter(s.pid, await postmasterPid()),
          commitTimes: (ids) => bench!.commitTimes(ids),
        });
        closeAudience(audience);
        const w = fixed.warmup;
        progress.log(
          `e2e warm-up at ${scale.e2eRate}/s (unmeasured, as long as one post per order takes): ${w.held ? 'rate held' : `rate NOT held (${w.sentPerSec}/s sent)`}, ` +
            `the posts' own answers took p50 ${w.post.p50Ms} / p99 ${w.post.p99Ms} ms` +
            (w.rest ? `; then ${w.rest.orders} order${w.rest.orders === 1 ? '' : 's'} it had not reached, ${w.rest.concurrency} at a time` : ''),
        );
        progress.log(
          `e2e at ${scale.e2eRate}/s: ${fixed.held ? 'rate held' : `rate NOT held (the posts backed up; ${fixed.sentPerSec}/s sent)`}, ` +
            `${fixed.delivered} of ${fixed.expected} deliveries; ${audience.closed.length} sockets closed by the service; ` +
            `the posts' own answers took p50 ${fixed.post.p50Ms} / p99 ${fixed.post.p99Ms} ms; ` +
            `CPU ms per post (with its deliveries) service / Postgres / this bench ${cpuText(fixed.cpu)}`,
        );
        progress.log(
          fixed.basis === 'commit'
            ? `e2e from the commit timestamps Postgres kept: commit → receipt p50 ${fixed.p50Ms} / p99 ${fixed.p99Ms} ms; ` +
                `commit → the post's answer p50 ${fixed.commitToAnswer!.p50Ms} / p99 ${fixed.commitToAnswer!.p99Ms} ms; ` +
                `recorded (the transaction's start) → receipt p50 ${fixed.recordedToReceipt.p50Ms} / p99 ${fixed.recordedToReceipt.p99Ms} ms`
            : 'e2e: this cluster keeps no commit timestamps (track_commit_timestamp = off), so the e2e figure is ' +
                "recorded (the transaction's start) → receipt, an upper bound of commit → receipt; see BENCHMARKS.md",
        );
        // The delivery rate is the fan-out's figure, not the ingest's (measured above): the same
        // number of sockets over a tenth of the customers, so each event reaches ten times more
        // of them and the ladder's top rungs need hundreds of events per second, not thousands.
        const dense = denseCustomers(f.customers);
        progress.step(`e2e: ${scale.sockets} sockets on ${dense.length} customers`, scale.sockets + 1);
        const crowd = await buildAudience(s.baseUrl, dense, scale.sockets, (d) => progress.update(d));
        progress.step('e2e: delivery rate held', 1, '');
        await bench!.vacuum();
        const held = await heldRate(
          crowd,
          scale.ladder,
          scale.holdSeconds,
          serviceEmitter(f, scale.holdSeconds, dense),
          { onStep: (t) => progress.update(0, `${t}/s`), meter: new CpuMeter(s.pid, await postmasterPid()), from: 'recorded' },
        );
        closeAudience(crowd);
        progress.log(`held rate, service (${crowd.fanout} sockets per event): ${JSON.stringify(held.steps)}${limitNote(held)}`);
        const rawHeld = await rawDeliveryRate(dense);
        result.e2e = {
          p50Ms: fixed.p50Ms,
          p99Ms: fixed.p99Ms,
          maxMs: fixed.maxMs,
          basis: fixed.basis,
          recordedToReceipt: pick(fixed.recordedToReceipt),
          ...(fixed.commitToAnswer ? { commitToAnswer: pick(fixed.commitToAnswer) } : {}),
          sendToReceipt: pick(fixed.sendToReceipt),
          heldDeliveriesPerSec: held.deliveriesPerSec,
          heldBySendDeliveriesPerSec: held.bySendDeliveriesPerSec,
          ceilingDeliveriesPerSec: rawHeld,
          ratio: ratio(held.deliveriesPerSec, rawHeld),
          fixedRate: { held: fixed.held, sentPerSec: fixed.sentPerSec, postP50Ms: fixed.post.p50Ms, postP99Ms: fixed.post.p99Ms, cpuMsPerPost: fixed.cpu },
          warmup: { held: w.held, sentPerSec: w.sentPerSec, postP50Ms: w.post.p50Ms, postP99Ms: w.post.p99Ms, ...(w.rest ? { rest: w.rest } : {}) },
        };
      }
      if (has('resume')) {
        progress.step(`resume ${scale.resumeEvents} events`, scale.resumeEvents);
        await bench!.vacuum();
        result.resume = await resume(s.baseUrl, f, scale.resumeEvents, (d) => progress.update(d));
      }
    });
  }

  if (has('memory')) {
    const n = scale.memorySockets;
    const m = { count: n, settleMs: scale.memorySettleMs };
    progress.step('memory per socket', n);
    const bytes = await withService((s) => bytesPerSocket(s.pid, s.baseUrl, f.customers, m, (d) => progress.update(d)));
    progress.step('ceiling: raw Socket.IO memory', n);
    const raw = await startRawSocketIo(options!.profileDir);
    const ceiling = await bytesPerSocket(raw.pid, raw.baseUrl, f.customers, m, (d) => progress.update(d)).finally(() =>
      raw.stop(),
    );
    result.memory = { bytesPerSocket: bytes, ceilingBytesPerSocket: ceiling };
  }

  if (has('startup')) {
    progress.step('startup', 2);
    const postgresMs = await startupPostgres(bench.url);
    progress.update(1);
    result.startup = { postgresMs, embeddedMs: options!.skipStartup ? null : await startupEmbedded() };
  }
  progress.stop();
  return result;
}

/** Said beside a held rate whose every rung held, up to heldRate's limit: the figure is a floor. */
const limitNote = (held: HeldRate) => (held.heldToLimit ? `; every rung held, to the limit of ${held.heldToLimit}/s: the figure is a floor` : '');

/** A latency's three figures, for the JSON (its count stays out). */
const pick = ({ p50Ms, p99Ms, maxMs }: Latency) => ({ p50Ms, p99Ms, maxMs });

/** A tenth of the customers (at least two): the held-rate audience's topics. */
const denseCustomers = (customers: string[]) => customers.slice(0, Math.max(2, Math.round(customers.length / 10)));

/** Raw Socket.IO's delivery rate held, with the same audience, in a process of its own. */
async function rawDeliveryRate(customers: string[]): Promise<number> {
  const raw = await startRawSocketIo(options!.profileDir);
  try {
    progress.step('ceiling: raw Socket.IO', scale.sockets + 1);
    const audience = await buildAudience(raw.baseUrl, customers, scale.sockets, (d) => progress.update(d));
    progress.step('ceiling: raw Socket.IO rate', 1);
    const held = await heldRate(
      audience,
      scale.ladder,
      scale.holdSeconds,
      rawEmitter(raw, customers, scale.holdSeconds),
      { onStep: (t) => progress.update(0, `${t}/s`), meter: new CpuMeter(raw.pid, undefined) },
    );
    closeAudience(audience);
    progress.log(`held rate, raw Socket.IO (${audience.fanout} sockets per event): ${JSON.stringify(held.steps)}${limitNote(held)}`);
    return held.deliveriesPerSec;
  } finally {
    await raw.stop();
  }
}

// Interrupted: stop the service and drop the bench database rather than leave them behind.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    progress.stop();
    console.error(`bench: ${signal}, cleaning up`);
    void Promise.allSettled([service?.stop(), bench?.drop()]).then(() => process.exit(130));
  });
}

try {
  const result = await main();
  console.log(`\n${table(result)}\n\n(${Math.round((Date.now() - started) / 1000)} s)`);
  if (options.out) writeFileSync(options.out, `${JSON.stringify(result, null, 2)}\n`);
} catch (err) {
  progress.stop();
  console.error('bench failed:', err);
  if (service) console.error(service.output().slice(-4000));
  process.exitCode = 1;
} finally {
  await service?.stop().catch(() => undefined);
  await http.close();
  await bench?.drop().catch((err) => console.error('could not drop the bench database:', err));
}
