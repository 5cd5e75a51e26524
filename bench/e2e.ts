import type { Socket } from 'socket.io-client';
import type { RawServer } from './ceilings/raw-socketio.js';
import { batchOf, postBatch } from './ingest.js';
import { nextEvent, token, type Fixtures } from './lib/fixtures.js';
import type { CpuMeter, CpuPerEvent } from './lib/cpu.js';
import { openLoop } from './lib/open-loop.js';
import { closeAll, connect, connectMany, Receipts } from './lib/sockets.js';
import { latency, nowMs, sleep, type Latency } from './lib/stats.js';

export interface Audience {
  sockets: Socket[];
  receipts: Receipts;
  /** Closed by the server (slow consumer and such), with the reasons given. */
  closed: string[];
  /** How many sockets receive each event: one customer's share plus the `all` subscriber. */
  fanout: number;
}

async function subscribe(socket: Socket, topic: string): Promise<void> {
  const ack = (await socket.timeout(30_000).emitWithAck('subscribe', { topic })) as { ok: boolean; error?: unknown };
  if (!ack.ok) throw new Error(`subscribe ${topic}: ${JSON.stringify(ack.error)}`);
}

/**
 * `count` sockets spread over the customers' topics, each with that customer's own token, and
 * one ops socket on `all`. The same audience is built on the raw Socket.IO server (tokens ignored).
 */
export async function buildAudience(
  url: string,
  customers: string[],
  count: number,
  onProgress?: (n: number) => void,
): Promise<Audience> {
  const receipts = new Receipts();
  const closed: string[] = [];
  const tokens = new Map(await Promise.all(customers.map(async (c) => [c, await token('customer', c)] as const)));
  const plan = [...Array.from({ length: count }, (_, i) => customers[i % customers.length]!), 'all'];
  const ops = await token('ops');
  const sockets = await connectMany(
    plan,
    async (c) => {
      const socket = await connect(`${url}/v1`, { token: c === 'all' ? ops : tokens.get(c)! });
      socket.on('event', (e: { id?: unknown; recordedAt?: unknown; data: { text?: unknown } }) => receipts.take(e.data.text, e.recordedAt, e.id));
      socket.on('closing', (r: { reason: string }) => closed.push(r.reason));
      await subscribe(socket, c === 'all' ? 'all' : `customer:${c}`);
      return socket;
    },
    onProgress,
  );
  return { sockets, receipts, closed, fanout: count / customers.length + 1 };
}

export function closeAudience(a: Audience) {
  closeAll(a.sockets);
}

/** Waits until `expected` receipts arrived or `graceMs` passed. */
async function settle(r: Receipts, expected: number, graceMs: number) {
  const until = nowMs() + graceMs;
  while (r.count < expected && nowMs() < until) await sleep(20);
}

/**
 * Single POSTs at `perSec` for `seconds`, each a note stamped with its send time; each post's own
 * send-to-answer, and the id of the event it appended with the time its answer arrived.
 */
async function postAtRate(f: Fixtures, o: { perSec: number; seconds: number; onTick?: (x: number) => void }, next: () => number) {
  const posts: number[] = [];
  const answers = new Map<string, number>();
  const r = await openLoop({ perSec: o.perSec, seconds: o.seconds, onTick: o.onTick }, async () => {
    const order = f.orders[next() % f.orders.length]!;
    const res = await order.factory.http.post(`/v1/orders/${order.id}/events`, nextEvent(order, String(nowMs())));
    if (res.status !== 201) throw new Error(`e2e post: ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
    posts.push(res.ms);
    answers.set((res.body as { id: string }).id, nowMs());
  });
  // Behind: more than 256 posts waited at once, and the sender stopped; the rate was not held.
  return { sent: r.sent, sentPerSec: Math.round(r.sent / r.seconds), held: !r.behind, post: latency(posts), answers };
}

export type RateRun = Omit<Awaited<ReturnType<typeof postAtRate>>, 'answers'> & {
  /** Orders the rate did not reach before it backed up, posted to afterwards, this many at a time. */
  rest?: { orders: number; concurrency: number };
};

/** How many of the orders a warm-up that backed up left cold are posted to at once. */
const REST_CONCURRENCY = 8;

/** One post to each order from `next()` until every order has had one, `REST_CONCURRENCY` at a time. */
async function postToTheRest(f: Fixtures, next: () => number): Promise<number> {
  let posted = 0;
  const worker = async () => {
    for (;;) {
      const n = next();
      if (n >= f.orders.length) return;
      const order = f.orders[n]!;
      const res = await order.factory.http.post(`/v1/orders/${order.id}/events`, nextEvent(order, String(nowMs())));
      if (res.status !== 201) throw new Error(`e2e warm-up post: ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
      posted++;
    }
  };
  await Promise.all(Array.from({ length: REST_CONCURRENCY }, worker));
  return posted;
}

/**
 * Commit-to-receipt at a fixed rate: single POSTs, each a note stamped with its send time. The
 * figure is commit → receipt where Postgres keeps commit timestamps (`track_commit_timestamp`,
 * `commitTimes`): each receipt against the instant its event's transaction wrote its commit
 * record. Where it does not, the figure is recorded → receipt (Receipts.fromRecorded: from the
 * start of the transaction, an upper bound by the transaction's own time), and `basis` says so.
 * Beside it always: recorded → receipt, commit → the post's answer (where commits are known),
 * and send → receipt, a looser bound that also holds the HTTP request and its wait for a group
 * (the ingest figures measure those).
 * A warm-up at the same rate goes first, unmeasured, as the ingest figures' closed loops have
 * one: for as long as one post to every order takes, so the measured part sees a service whose
 * code has been compiled and that has written to its orders before (a fresh process has kept none
 * of them). Like the measured part it stops once 256 posts wait (a cold service backs up); the
 * orders it did not reach then get their first post 8 at a time, so that the measured part never
 * starts on a process and orders that have not had them (a fresh process's first posts cost it
 * about twice the CPU of later ones: a warm-up that stopped a third of the way left the measured
 * part to back up in turn; BENCHMARKS.md change 62). Its own figures come back beside the
 * measured ones (`warmup`), so a cold start is seen, not hidden.
 */
export async function fixedRate(
  f: Fixtures,
  a: Audience,
  o: {
    perSec: number;
    seconds: number;
    onTick?: (x: number) => void;
    meter?: CpuMeter;
    commitTimes?: (eventIds: string[]) => Promise<Map<string, number> | undefined>;
  },
): Promise<
  Latency & {
    basis: 'commit' | 'transactionStart';
    recordedToReceipt: Latency;
    commitToAnswer?: Latency;
    sendToReceipt: Latency;
    delivered: number;
    expected: number;
    sentPerSec: number;
    held: boolean;
    post: Latency;
    warmup: RateRun;
    cpu?: CpuPerEvent;
  }
> {
  let i = 0;
  const next = () => i++;
  a.receipts.reset(false);
  const warmup: RateRun = await postAtRate(f, { perSec: o.perSec, seconds: Math.max(1, Math.ceil(f.orders.length / o.perSec)) }, next);
  const rest = i < f.orders.length ? await postToTheRest(f, next) : 0;
  if (rest) warmup.rest = { orders: rest, concurrency: REST_CONCURRENCY };
  await settle(a.receipts, (warmup.sent + rest) * a.fanout, 5_000);
  a.receipts.reset(true, { recorded: true, ids: true });
  o.meter?.start();
  const r = await postAtRate(f, o, next);
  o.meter?.end();
  const expected = r.sent * a.fanout;
  await settle(a.receipts, expected, 5_000);
  const committed = await o.commitTimes?.([...r.answers.keys()]);
  const fromRecorded = latency(a.receipts.fromRecorded);
  const fromCommit = committed && latency(a.receipts.commitToReceipt(committed));
  const commitToAnswer = committed && latency([...r.answers].flatMap(([id, at]) => (committed.has(id) ? [at - committed.get(id)!] : [])));
  // post: send to answer of each post, the part of a latency spent before the commit was known.
  return {
    ...(fromCommit ?? fromRecorded),
    basis: fromCommit ? 'commit' : 'transactionStart',
    recordedToReceipt: fromRecorded,
    ...(commitToAnswer ? { commitToAnswer } : {}),
    sendToReceipt: latency(a.receipts.latencies),
    delivered: a.receipts.count,
    expected,
    sentPerSec: r.sentPerSec,
    held: r.held,
    post: r.post,
    warmup,
    cpu: o.meter?.perEvent(r.sent),
  };
}

export interface HeldRate {
  /** Deliveries per second actually received at the highest step held. */
  deliveriesPerSec: number;
  /** With `from: 'recorded'`: the same, were the rungs judged by send → receipt (the rounds before 23). */
  bySendDeliveriesPerSec?: number;
  /** Set when every rung held, up to the limit heldRate climbs to (twice the ladder's top): the figure is a floor. */
  heldToLimit?: number;
  steps: Array<{
    target: number;
    received: number;
    expected: number;
    /** The p99 the rung is judged by (`from`). */
    p99Ms: number;
    /** Send → receipt, where the rung is judged from the transaction's start. */
    sendP99Ms?: number;
    held: boolean;
    cpuMsPer1000?: CpuPerEvent;
  }>;
}

/**
 * The largest delivery rate held for `seconds`: every delivery arrives (99%), with p99 under
 * 500 ms, and the sender keeps its rate. `emit(eventsPerSec)` produces the events. The ladder's
 * rungs are 10-25% apart, so its top rung held can read up to a rung below what was held: between
 * the last rung held and the first missed, the gap is halved `refine` times (change 72).
 *
 * The p99 is taken from the moment the server has the event (change 76). Raw Socket.IO stamps
 * each event as it emits it (`from: 'send'`); the service has it once its transaction commits,
 * so its rungs are judged by recorded → receipt (`from: 'recorded'`: from the transaction's
 * start, an upper bound of commit → receipt, the e2e latency). Its send → receipt p99,
 * which also holds the bench's HTTP post and its wait for a group, stays beside it in each step,
 * and `bySendDeliveriesPerSec` is the rate those would have given (the best rung held below the
 * first they miss, unrefined). The sender must still keep its rate (more than 32 posts waiting
 * fail the rung), so the writes cannot fall far behind.
 */
export async function heldRate(
  a: Audience,
  ladder: number[],
  seconds: number,
  emit: (eventsPerSec: number) => Promise<number>,
  o: {
    onStep?: (target: number) => void;
    refine?: number;
    /** Reads the CPU of the server, Postgres and this bench around each rung (per 1,000 deliveries). */
    meter?: CpuMeter;
    /** Where a delivery's latency starts: its sender's stamp, or its transaction's start (the service's). */
    from?: 'send' | 'recorded';
  } = {},
): Promise<HeldRate> {
  const { onStep, refine = 2, meter, from = 'send' } = o;
  const steps: HeldRate['steps'] = [];
  let best = 0;
  const bySend: Array<{ target: number; rate: number; held: boolean }> = [];
  const attempt = async (target: number) => {
    onStep?.(target);
    a.receipts.reset(true, { recorded: from === 'recorded' });
    meter?.start();
    const sent = await emit(target / a.fanout).catch(() => -1);
    const expected = Math.max(0, sent) * a.fanout;
    await settle(a.receipts, expected, 2_000);
    meter?.end();
    const received = a.receipts.count;
    const arrived = sent > 0 && received >= 0.99 * expected;
    const sendP99 = latency(a.receipts.latencies).p99Ms;
    const p99 = from === 'recorded' ? latency(a.receipts.fromRecorded).p99Ms : sendP99;
    const held = arrived && p99 <= 500;
    const cpu = meter?.perEvent(received / 1000);
    steps.push({ target, received, expected, p99Ms: p99, ...(from === 'send' ? {} : { sendP99Ms: sendP99 }), held, ...(cpu ? { cpuMsPer1000: cpu } : {}) });
    if (held) best = Math.max(best, received / seconds);
    bySend.push({ target, rate: received / seconds, held: arrived && sendP99 <= 500 });
    return held;
  };
  let lastHeld = 0;
  let missed: number | undefined;
  // Held at the top of the ladder, it climbs on by the ladder's last gap, up to twice its top:
  // the figure is where the rate stops holding, not where the ladder ends (round 24: the service
  // and raw Socket.IO both held the top rung, 150k, and the ratio read 1.003).
  const gap = ladder.length > 1 ? ladder.at(-1)! - ladder.at(-2)! : ladder[0]!;
  const limit = 2 * ladder.at(-1)!;
  const rungs = [...ladder];
  for (let t = ladder.at(-1)! + gap; t <= limit; t += gap) rungs.push(t);
  for (const target of rungs) {
    if (!(await attempt(target))) {
      missed = target;
      break;
    }
    lastHeld = target;
    await sleep(500);
  }
  for (let i = 0; missed !== undefined && i < refine; i++) {
    const middle = Math.round((lastHeld + missed) / 2 / 500) * 500;
    if (middle <= lastHeld || middle >= missed) break;
    await quiet(a.receipts); // what the missed rung still delivers must not count for the next
    if (await attempt(middle)) lastHeld = middle;
    else missed = middle;
  }
  return {
    deliveriesPerSec: Math.round(best),
    ...(from === 'send' ? {} : { bySendDeliveriesPerSec: heldBelowFirstMiss(bySend) }),
    ...(missed === undefined ? { heldToLimit: limit } : {}),
    steps,
  };
}

/** What a ladder stopped at its first missed rung would have read: the best rate held below that rung. */
function heldBelowFirstMiss(rungs: Array<{ target: number; rate: number; held: boolean }>): number {
  const firstMiss = Math.min(...rungs.filter((r) => !r.held).map((r) => r.target));
  return Math.round(Math.max(0, ...rungs.filter((r) => r.held && r.target < firstMiss).map((r) => r.rate)));
}

/** Waits until no receipt has arrived for half a second (at most 15 s). */
async function quiet(r: Receipts) {
  const until = nowMs() + 15_000;
  for (let seen = -1; r.count !== seen && nowMs() < until; ) {
    seen = r.count;
    await sleep(500);
  }
}

/** The service's events for heldRate: batches of up to 100 notes on orders of the given customers, one factory after another. */
export function serviceEmitter(f: Fixtures, seconds: number, customers: string[]) {
  const wanted = new Set(customers);
  const sources = f.factories
    .map((factory) => ({ factory, orders: factory.orders.filter((o) => wanted.has(o.customerId)) }))
    .filter((x) => x.orders.length);
  let k = 0;
  return async (eventsPerSec: number) => {
    const r = await openLoop({ perSec: eventsPerSec, seconds, unit: 100, tickMs: 20, maxInFlight: 32 }, async (n) => {
      const { factory, orders } = sources[k++ % sources.length]!;
      await postBatch(
        factory,
        batchOf(orders, k * 7, n, () => String(nowMs())),
      );
    });
    return r.behind ? -1 : r.sent;
  };
}

export const rawEmitter = (raw: RawServer, customers: string[], seconds: number) => (eventsPerSec: number) =>
  raw.emit(
    eventsPerSec,
    seconds,
    customers.map((c) => `customer:${c}`),
  );
