// Streams across instances, as deployed: several server processes (src/server.ts) on one real
// Postgres, real socket.io-client sockets and real SSE over HTTP. What is checked is invariant 3
// (each order's events reach every stream in seq order, cursors totally ordered) and invariant 4
// (a client resuming from its last cursor gets everything after it exactly once, in order, on
// whichever instance, even after a SIGKILL). The reference is always GET /v1/feed, paged with nextAfter.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { io as connect, type Socket } from 'socket.io-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../src/auth/jwt.js';
import type { Event } from '../src/events/schemas.js';
import type { ClientToServerEvents, ServerToClientEvents, StreamedEvent, SubscribeAck } from '../src/streams/protocol.js';
import { JWT_SECRET } from './helpers/app.js';
import { skipWithoutRealPostgres } from './helpers/env.js';
import { ApiClient } from './helpers/http.js';
import { sharedDatabase, startServer, type ServerProcess } from './helpers/processes.js';

type ClientSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

/** The smallest cursor: "from the beginning". */
const ZERO = '0'.repeat(32);
const SERVER_ENV = { RATE_LIMIT_PER_MINUTE: '1000000', LOG_LEVEL: 'warn' };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Runs tasks with at most `n` in flight. */
async function pool<T>(tasks: Array<() => Promise<T>>, n: number): Promise<T[]> {
  const out: T[] = new Array(tasks.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, tasks.length) }, async () => {
      while (next < tasks.length) {
        const i = next++;
        out[i] = await tasks[i]!();
      }
    }),
  );
  return out;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN;
};
const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]! : NaN;
};

// ---------------------------------------------------------------------------------------------
// The processes, the world, the clients.

let db: Awaited<ReturnType<typeof sharedDatabase>> | undefined;
const servers: ServerProcess[] = [];
let A: ServerProcess;
let B: ServerProcess;
/** A third instance that replays in pages of 20 (so a replay spans many pages while writes go on); SIGKILLed in test 4. */
let C: ServerProcess;

interface Net {
  admin: string;
  ops: string;
  customerA: { id: string; engineerId: string; token: string };
  customerB: { id: string; token: string };
  fab: { id: string; key: string };
  assembly: { id: string; key: string };
  logistics: { id: string; key: string };
}
let net: Net;

const api = (server: ServerProcess, credentials: string | { apiKey: string }) => new ApiClient(server.baseUrl).as(credentials);

/** Fabrication and components in parallel, then placement, then shipping (as test/helpers/world.ts). */
const standardRoute = (n: Net) => [
  { stage: 'review', factoryId: n.fab.id, plannedHours: 0.5 },
  { stage: 'cam', factoryId: n.fab.id, plannedHours: 2 },
  { stage: 'drilling', factoryId: n.fab.id, plannedHours: 2 },
  { stage: 'components', factoryId: n.assembly.id, plannedHours: 24, after: [] },
  { stage: 'smt', factoryId: n.assembly.id, plannedHours: 4, after: ['drilling', 'components'] },
  { stage: 'shipping', factoryId: n.logistics.id, plannedHours: 24 },
];

/** The same network as test/helpers/world.ts, created through the REST API of one server process. */
async function createNet(server: ServerProcess): Promise<Net> {
  const adminToken = await mintToken(JWT_SECRET, { sub: 'admin-resume', role: 'admin' });
  const admin = api(server, adminToken);
  const mk = async (path: string, body: unknown) => {
    const r = await admin.post(path, body);
    expect(r.status, r.text).toBe(201);
    return r.body;
  };
  const a = await mk('/v1/customers', { name: 'Acme Robotics', country: 'DE' });
  const engineer = await mk(`/v1/customers/${a.id}/engineers`, { name: 'Ada', email: 'ada@acme.example' });
  const b = await mk('/v1/customers', { name: 'Bolt Labs', country: 'US' });
  const factory = async (name: string, kind: string) => {
    const f = await mk('/v1/factories', { name, kind, country: 'CN', timezone: 'Asia/Shanghai' });
    const k = await mk(`/v1/factories/${f.id}/api-keys`, { label: 'mes' });
    return { id: f.id as string, key: k.key as string };
  };
  return {
    admin: adminToken,
    ops: await mintToken(JWT_SECRET, { sub: 'ops-resume', role: 'ops' }),
    customerA: { id: a.id, engineerId: engineer.id, token: await mintToken(JWT_SECRET, { sub: 'ada', role: 'customer', customerId: a.id }) },
    customerB: { id: b.id, token: await mintToken(JWT_SECRET, { sub: 'bob', role: 'customer', customerId: b.id }) },
    fab: await factory('Shangrao PCB 1', 'fabrication'),
    assembly: await factory('Shangrao SMT 2', 'assembly'),
    logistics: await factory('Jiangxi Logistics', 'logistics'),
  };
}

async function createOrder(server: ServerProcess, customer: 'A' | 'B' = 'A'): Promise<{ id: string; created: Event }> {
  const ops = api(server, net.ops);
  const r = await ops.post('/v1/orders', {
    customerId: customer === 'A' ? net.customerA.id : net.customerB.id,
    ...(customer === 'A' ? { engineerId: net.customerA.engineerId } : {}),
    product: '4-layer FR4 100x80mm',
    quantity: 50,
    promisedAt: new Date(Date.now() + 7 * 86400_000).toISOString(),
    route: standardRoute(net),
  });
  expect(r.status, r.text).toBe(201);
  const events = await ops.get(`/v1/orders/${r.body.id}/events`);
  expect(events.status, events.text).toBe(200);
  expect(events.body.items.map((e: Event) => e.seq)).toEqual([1]);
  return { id: r.body.id, created: events.body.items[0] };
}

async function post(client: ApiClient, orderId: string, body: Record<string, unknown>): Promise<Event> {
  const r = await client.post(`/v1/orders/${orderId}/events`, body);
  expect(r.status, r.text).toBe(201);
  return r.body;
}

const note = (orderId: string, text: string) => ({ orderId, idempotencyKey: randomUUID(), type: 'note', text });

async function batch(client: ApiClient, items: Array<Record<string, unknown>>): Promise<Event[]> {
  const r = await client.post('/v1/events/batch', { events: items });
  expect(r.status, r.text).toBe(200);
  const bad = r.body.results.map((x: any, i: number) => [i, x]).filter(([, x]: [number, any]) => x.status !== 201);
  expect(bad, JSON.stringify(bad.slice(0, 3))).toEqual([]);
  return r.body.results.map((x: any) => x.event);
}

/** GET /v1/feed after a cursor, paged with nextAfter until the end: the reference every stream must equal. */
async function feed(server: ServerProcess, token: string, topic: string, after: string): Promise<Event[]> {
  const client = api(server, token);
  const out: Event[] = [];
  let cursor = after;
  for (let page = 0; page < 1000; page++) {
    const r = await client.get(`/v1/feed?topic=${encodeURIComponent(topic)}&after=${cursor}&limit=1000`);
    expect(r.status, r.text).toBe(200);
    out.push(...r.body.items);
    if (!r.body.items.length) return out;
    cursor = r.body.nextAfter;
  }
  throw new Error('feed did not end after 1000 pages');
}

/** The cursor of the last event of a topic the feed serves now. */
async function head(server: ServerProcess, token: string, topic: string, after = ZERO): Promise<string> {
  return (await feed(server, token, topic, after)).at(-1)?.cursor ?? after;
}

const tag = (e: Event) => `${e.orderId.slice(0, 8)}#${e.seq}@${e.cursor.slice(8, 16)}.${e.cursor.slice(-4)}`;

/**
 * Everything wrong with a received stream, compared to the feed: duplicates, events missing,
 * events that should not be there, cursors that do not increase, the first position that differs.
 * Empty when the stream is exactly the feed.
 */
function streamProblems(label: string, got: Event[], want: Event[]): string[] {
  const problems: string[] = [];
  const seen = new Map<string, number>();
  const dups: string[] = [];
  for (const e of got) {
    const n = (seen.get(e.id) ?? 0) + 1;
    seen.set(e.id, n);
    if (n === 2) dups.push(tag(e));
  }
  const wanted = new Set(want.map((e) => e.id));
  const missing = want.filter((e) => !seen.has(e.id)).map(tag);
  const extra = got.filter((e) => !wanted.has(e.id)).map(tag);
  if (got.length !== want.length) problems.push(`${label}: received ${got.length} events, the feed has ${want.length}`);
  if (dups.length) problems.push(`${label}: ${dups.length} duplicated: ${dups.slice(0, 8).join(' ')}`);
  if (missing.length) problems.push(`${label}: ${missing.length} missing: ${missing.slice(0, 8).join(' ')}`);
  if (extra.length) problems.push(`${label}: ${extra.length} not in the feed: ${extra.slice(0, 8).join(' ')}`);
  for (let i = 1; i < got.length; i++) {
    if (got[i]!.cursor <= got[i - 1]!.cursor) {
      problems.push(`${label}: cursor does not increase at #${i}: ${tag(got[i - 1]!)} then ${tag(got[i]!)}`);
      break;
    }
  }
  const first = got.findIndex((e, i) => want[i]?.id !== e.id);
  if (first >= 0) {
    const ctx = (xs: Event[]) => xs.slice(Math.max(0, first - 2), first + 3).map(tag).join(' ');
    problems.push(`${label}: first difference at #${first}: received [${ctx(got)}], feed [${ctx(want)}]`);
  }
  return problems;
}

/** For each order: the seqs one stream carried must be exactly 1..lastSeq. */
function seqProblems(label: string, got: Event[], lastSeq: Map<string, number>): string[] {
  const problems: string[] = [];
  for (const [orderId, n] of lastSeq) {
    const seqs = got.filter((e) => e.orderId === orderId).map((e) => e.seq);
    const want = Array.from({ length: n }, (_, i) => i + 1);
    if (seqs.join() !== want.join()) {
      const at = seqs.findIndex((s, i) => s !== i + 1);
      problems.push(
        `${label}: order ${orderId.slice(0, 8)} seqs (${seqs.length}, last seq ${n}) differ from 1..${n}` +
          (at >= 0 ? ` at #${at}: …${seqs.slice(Math.max(0, at - 3), at + 4).join(',')}…` : ''),
      );
    }
  }
  return problems;
}

const openSockets = new Set<ClientSocket>();

/**
 * One socket subscribed to one topic. Records every event it is sent (whatever socket of this
 * subscriber delivered it) with its arrival time. With `autoResume`, a disconnection it did not ask
 * for (slow consumer, server gone) is followed by a new socket that subscribes after the last cursor
 * received, as the protocol tells clients to do.
 */
class Subscriber {
  events: StreamedEvent[] = [];
  arrivals = new Map<string, number>();
  log: string[] = [];
  start: string | undefined;
  resumes = 0;
  socket: ClientSocket | undefined;
  private closed = false;

  constructor(
    readonly label: string,
    readonly auth: { token: string } | { apiKey: string },
    readonly topic: string,
    readonly autoResume?: () => ServerProcess,
  ) {}

  /** The cursor to resume after. */
  get last(): string {
    return this.events.at(-1)?.cursor ?? this.start ?? ZERO;
  }

  async open(server: ServerProcess, after?: string): Promise<SubscribeAck> {
    const socket: ClientSocket = connect(`${server.baseUrl}/v1`, {
      path: '/socket.io',
      auth: this.auth,
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
    });
    openSockets.add(socket);
    this.socket = socket;
    socket.on('event', (e) => {
      this.events.push(e);
      this.arrivals.set(e.id, performance.now());
    });
    socket.on('closing', (info) => this.log.push(`closing: ${info.reason}`));
    socket.on('disconnect', (reason) => {
      openSockets.delete(socket);
      this.log.push(`disconnect: ${reason}`);
      if (this.closed || !this.autoResume || this.socket !== socket || reason === 'io client disconnect') return;
      this.resumes++;
      const to = this.autoResume();
      void this.open(to, this.last).catch((err) => this.log.push(`resume failed: ${String(err)}`));
    });
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        socket.once('connect', () => resolve());
        socket.once('connect_error', reject);
      }),
      10_000,
      `${this.label} connecting`,
    );
    const ack = await withTimeout(
      new Promise<SubscribeAck>((resolve) => socket.emit('subscribe', after ? { topic: this.topic, after } : { topic: this.topic }, resolve)),
      10_000,
      `${this.label} subscribe ack`,
    );
    expect(ack, `${this.label} subscribe`).toMatchObject({ ok: true, topic: this.topic });
    if (this.start === undefined && ack.ok) this.start = after ?? ack.cursor;
    return ack;
  }

  close() {
    this.closed = true;
    this.socket?.disconnect();
  }
}

/**
 * Keeps posting notes (singles and small batches) to some orders through some servers, from
 * `concurrency` loops, until stopped (or `maxMs`). Records what was acknowledged.
 */
function startWriter(servers: ServerProcess[], orderIds: string[], concurrency = 2, maxMs = 20_000) {
  let stopped = false;
  const written: Event[] = [];
  const errors: string[] = [];
  const end = Date.now() + maxMs;
  const loops = Array.from({ length: concurrency }, async (_, k) => {
    for (let i = 0; !stopped && Date.now() < end; i++) {
      const client = api(servers[(k + i) % servers.length]!, net.ops);
      const orderId = orderIds[(k * 7 + i) % orderIds.length]!;
      try {
        if (i % 4 === 3) {
          const items = [0, 1, 2].map((j) => note(orderIds[(k + i + j * 3) % orderIds.length]!, `writer ${k} batch ${i}.${j}`));
          const r = await client.post('/v1/events/batch', { events: items });
          if (r.status !== 200) errors.push(`batch ${r.status} ${r.text}`);
          else {
            for (const x of r.body.results) {
              if (x.status === 201) written.push(x.event);
              else errors.push(`item ${x.status}`);
            }
          }
        } else {
          const r = await client.post(`/v1/orders/${orderId}/events`, { type: 'note', text: `writer ${k} note ${i}` });
          if (r.status !== 201) errors.push(`post ${r.status} ${r.text}`);
          else written.push(r.body);
        }
      } catch (err) {
        errors.push(String(err));
        await sleep(50);
      }
    }
  });
  const writer = {
    written,
    errors,
    async stop() {
      stopped = true;
      await Promise.all(loops);
      writers.delete(writer);
    },
  };
  writers.add(writer);
  return writer;
}
const writers = new Set<{ stop(): Promise<void> }>();

/**
 * Waits until the feed contains `mustInclude` and the stream holds at least as many events as the
 * feed (bounded), then a little longer so that a late duplicate would show; returns the final feed.
 */
async function settle(
  streamLength: () => number,
  reference: () => Promise<Event[]>,
  mustInclude: Iterable<string> = [],
  ms = 15_000,
): Promise<Event[]> {
  const ids = [...mustInclude];
  const deadline = Date.now() + ms;
  for (;;) {
    const want = await reference();
    const have = new Set(want.map((e) => e.id));
    if (ids.every((id) => have.has(id)) && streamLength() >= want.length) break;
    if (Date.now() > deadline) break; // the assertions then say what is missing
    await sleep(100);
  }
  await sleep(400);
  return reference();
}

/** An SSE reader over fetch: parses `id:` / `event:` / `data:` blocks as they arrive. */
class SseReader {
  events: Event[] = [];
  ids: string[] = [];
  closings: string[] = [];
  status = 0;
  private controller = new AbortController();
  private done: Promise<void>;
  private ready: Promise<void>;

  constructor(url: string, headers: Record<string, string>) {
    let markReady!: () => void;
    this.ready = new Promise<void>((r) => (markReady = r));
    this.done = (async () => {
      try {
        const res = await fetch(url, { headers, signal: this.controller.signal });
        this.status = res.status;
        markReady();
        if (!res.ok || !res.body) return;
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += decoder.decode(value, { stream: true });
          for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
            this.block(buf.slice(0, i));
            buf = buf.slice(i + 2);
          }
        }
      } catch (err) {
        if (!this.controller.signal.aborted) throw err;
      } finally {
        markReady();
      }
    })();
  }

  private block(text: string) {
    let id: string | undefined;
    let type = 'message';
    const data: string[] = [];
    for (const line of text.split('\n')) {
      if (line.startsWith(':')) continue;
      const at = line.indexOf(':');
      const field = at < 0 ? line : line.slice(0, at);
      const value = at < 0 ? '' : line.slice(at + 1).replace(/^ /, '');
      if (field === 'id') id = value;
      else if (field === 'event') type = value;
      else if (field === 'data') data.push(value);
    }
    if (type === 'event') {
      const e = JSON.parse(data.join('\n')) as Event;
      this.events.push(e);
      this.ids.push(id ?? '(no id)');
    } else if (type === 'closing') this.closings.push(data.join('\n'));
  }

  async opened(): Promise<number> {
    await withTimeout(this.ready, 10_000, 'SSE response');
    return this.status;
  }

  async stop(): Promise<void> {
    this.controller.abort();
    await withTimeout(this.done, 10_000, 'SSE reader to end');
  }
}
const sseReaders = new Set<SseReader>();
const subscribers: Subscriber[] = [];
function subscriber(label: string, auth: { token: string } | { apiKey: string }, topic: string, autoResume?: () => ServerProcess) {
  const s = new Subscriber(label, auth, topic, autoResume);
  subscribers.push(s);
  return s;
}

// ---------------------------------------------------------------------------------------------

describe.skipIf(skipWithoutRealPostgres())('streams across instances: resume, order, SIGKILL (server processes, real Postgres)', () => {
  beforeAll(async () => {
    db = await sharedDatabase();
    const started = await Promise.allSettled([
      startServer({ DATABASE_URL: db.url, ...SERVER_ENV }),
      startServer({ DATABASE_URL: db.url, ...SERVER_ENV }),
      startServer({ DATABASE_URL: db.url, ...SERVER_ENV, STREAM_BATCH_SIZE: '20' }),
    ]);
    for (const s of started) if (s.status === 'fulfilled') servers.push(s.value);
    for (const s of started) if (s.status === 'rejected') throw s.reason;
    [A, B, C] = servers as [ServerProcess, ServerProcess, ServerProcess];
    net = await createNet(A);
  }, 90_000);

  // Each test ends its own writers, sockets and SSE readers (a subscriber left open would follow the next tests).
  afterEach(async () => {
    for (const w of [...writers]) await w.stop().catch(() => undefined);
    for (const s of subscribers) s.close();
    for (const r of sseReaders) await r.stop().catch(() => undefined);
    sseReaders.clear();
  });

  afterAll(async () => {
    for (const w of [...writers]) await w.stop().catch(() => undefined);
    for (const s of subscribers) s.close();
    for (const s of openSockets) s.disconnect();
    for (const r of sseReaders) await r.stop().catch(() => undefined);
    for (const s of subscribers) if (s.log.some((l) => !l.includes('io client disconnect'))) console.log(`[${s.label}] ${s.log.join(' | ')}`);
    await Promise.all(
      servers.map(async (s) => {
        const code = await Promise.race([s.kill('SIGTERM'), sleep(8000).then(() => 'timeout')]);
        if (code === 'timeout') await s.kill('SIGKILL');
        const out = s.output().trim();
        if (out) console.log(`server ${s.baseUrl} printed:\n${out.slice(-3000)}`);
      }),
    );
    await db?.drop();
  }, 60_000);

  it('a subscriber on B receives what is written through A, in cursor order, each once (all as ops, customer:<id> as that customer)', async () => {
    const all = subscriber('t1 all@B', { token: net.ops }, 'all');
    const mine = subscriber('t1 customer@B', { token: net.customerA.token }, `customer:${net.customerA.id}`);
    await all.open(B);
    await mine.open(B);

    const o1 = await createOrder(A, 'A');
    const o2 = await createOrder(A, 'A');
    const o3 = await createOrder(A, 'B'); // another customer's: in `all`, never in customer A's stream
    const fab = api(A, { apiKey: net.fab.key });
    const assembly = api(A, { apiKey: net.assembly.key });
    const ops = api(A, net.ops);
    const written: Event[] = [o1.created, o2.created, o3.created];
    for (const o of [o1, o2, o3]) {
      written.push(await post(fab, o.id, { type: 'stage_started', stage: 'review' }));
      written.push(await post(assembly, o.id, { type: 'stage_progress', stage: 'components', progress: 40 }));
      written.push(await post(fab, o.id, { type: 'stage_completed', stage: 'review' }));
      written.push(await post(ops, o.id, { type: 'note', text: `note on ${o.id}` }));
    }
    const ofA = written.filter((e) => e.orderId !== o3.id);

    const wantAll = await settle(() => all.events.length, () => feed(A, net.ops, 'all', all.start!), written.map((e) => e.id));
    const wantMine = await settle(
      () => mine.events.length,
      () => feed(B, net.customerA.token, `customer:${net.customerA.id}`, mine.start!),
      ofA.map((e) => e.id),
    );

    // The feed itself holds exactly what was written, in cursor order (and each order's in seq order).
    expect(wantAll.map((e) => e.id).sort()).toEqual(written.map((e) => e.id).sort());
    expect(wantMine.map((e) => e.id).sort()).toEqual(ofA.map((e) => e.id).sort());
    expect(streamProblems('t1 all', all.events, wantAll)).toEqual([]);
    expect(streamProblems('t1 customer', mine.events, wantMine)).toEqual([]);
    const last = new Map([o1, o2, o3].map((o) => [o.id, 5]));
    expect(seqProblems('t1 all', all.events, last)).toEqual([]);
    expect(seqProblems('t1 customer', mine.events, new Map([o1, o2].map((o) => [o.id, 5])))).toEqual([]);
    expect(new Set(all.events.map((e) => e.topic))).toEqual(new Set(['all']));
    expect(new Set(mine.events.map((e) => e.topic))).toEqual(new Set([`customer:${net.customerA.id}`]));
    expect(all.resumes + mine.resumes).toBe(0);
  }, 60_000);

  it('replay then live while a writer keeps posting: each subscriber after an early cursor equals the feed after it', async () => {
    const orders = await pool(Array.from({ length: 10 }, () => () => createOrder(A, 'A')), 4);
    const ops = api(A, net.ops);
    // 300 events: stage_progress on `components`, 30 per order, 1..30, interleaved across orders, 3 batches of 100.
    const written: Event[] = [];
    for (let b = 0; b < 3; b++) {
      const items: Array<Record<string, unknown>> = [];
      for (let j = 0; j < 10; j++) {
        for (const o of orders) {
          items.push({ orderId: o.id, idempotencyKey: randomUUID(), type: 'stage_progress', stage: 'components', progress: b * 10 + j + 1 });
        }
      }
      written.push(...(await batch(ops, items)));
    }
    expect(written).toHaveLength(300);
    const early = written[4]!.cursor;

    const writer = startWriter([A], orders.map((o) => o.id), 3);
    const subs: Subscriber[] = [];
    for (let k = 0; k < 6; k++) {
      const on = k % 2 ? C : B;
      const s = subscriber(`t2 all#${k}@${k % 2 ? 'C' : 'B'}`, { token: net.ops }, 'all', () => on);
      await s.open(on, early);
      subs.push(s);
      await sleep(100);
    }
    const mine = subscriber('t2 customer@B', { token: net.customerA.token }, `customer:${net.customerA.id}`, () => B);
    await mine.open(B, early);
    await until(() => writer.written.length >= 150 || writer.errors.length > 0, 15_000, 'the writer to post 150 events');
    await sleep(200);
    await writer.stop();
    expect(writer.errors).toEqual([]);

    const mustInclude = [...written, ...writer.written].filter((e) => e.cursor > early).map((e) => e.id);
    const wantAll = await settle(() => Math.min(...subs.map((s) => s.events.length)), () => feed(A, net.ops, 'all', early), mustInclude);
    const wantMine = await settle(
      () => mine.events.length,
      () => feed(B, net.customerA.token, `customer:${net.customerA.id}`, early),
      mustInclude,
    );
    expect(wantAll.length).toBe(295 + writer.written.length); // everything written after the 5th event
    const problems = [...subs.flatMap((s) => streamProblems(s.label, s.events, wantAll)), ...streamProblems(mine.label, mine.events, wantMine)];
    expect(problems).toEqual([]);
    console.log(
      `t2: ${subs.length + 1} subscribers after an early cursor; writer posted ${writer.written.length} meanwhile; ` +
        `resumes ${[...subs, mine].map((s) => s.resumes).join(',')}`,
    );
  }, 60_000);

  it('ordering race: concurrent multi-order batches against single posts, through A and B: every stream carries each order 1..n', async () => {
    const start = await head(A, net.ops, 'all');
    const orders = await pool(Array.from({ length: 8 }, (_, i) => () => createOrder(i % 2 ? B : A, i % 3 ? 'A' : 'B')), 4);
    const ids = orders.map((o) => o.id);
    const allB = subscriber('t3 all@B', { token: net.ops }, 'all');
    const allA = subscriber('t3 all@A', { token: net.ops }, 'all');
    await allB.open(B, start);
    await allA.open(A, start);
    const on = (i: number) => [A, B, C][i % 3]!;
    const perOrder = orders.map((o, i) => subscriber(`t3 order:${o.id.slice(0, 8)}@${'ABC'[i % 3]}`, { token: net.ops }, `order:${o.id}`));
    await Promise.all(perOrder.map((s, i) => s.open(on(i), start)));

    // A deterministic shuffle, so that a failure can be replayed.
    let seed = 42;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const tasks: Array<() => Promise<number>> = [];
    for (let b = 0; b < 40; b++) {
      const touched = [...ids].sort(() => rand(3) - 1).slice(0, 3 + rand(4));
      const items = touched.flatMap((id) => Array.from({ length: 1 + rand(3) }, (_, j) => note(id, `batch ${b} item ${j}`)));
      items.sort(() => rand(3) - 1);
      const via = b % 2 ? A : B;
      tasks.push(async () => (await batch(api(via, net.ops), items)).length);
    }
    for (let p = 0; p < 160; p++) {
      const id = ids[rand(ids.length)]!;
      const via = p % 2 ? B : A;
      tasks.push(async () => (await post(api(via, net.ops), id, { type: 'note', text: `single ${p}` }), 1));
    }
    // Interleave batches and singles so that they race.
    const mixed = tasks.map((t, i) => ({ t, k: rand(1000) + (i % 2) })).sort((x, y) => x.k - y.k).map((x) => x.t);
    const counts = await pool(mixed, 12);
    const total = counts.reduce((a, b) => a + b, 0);

    const lastSeq = new Map<string, number>();
    for (const id of ids) {
      const r = await api(A, net.ops).get(`/v1/orders/${id}`);
      expect(r.status, r.text).toBe(200);
      lastSeq.set(id, r.body.lastSeq);
    }
    expect([...lastSeq.values()].reduce((a, b) => a + b, 0)).toBe(total + ids.length);

    const deadline = Date.now() + 20_000;
    const complete = () =>
      perOrder.every((s, i) => s.events.length >= lastSeq.get(ids[i]!)!) &&
      [allA, allB].every((s) => ids.every((id) => s.events.filter((e) => e.orderId === id).length >= lastSeq.get(id)!));
    while (!complete() && Date.now() < deadline) await sleep(100);
    await sleep(400);

    const problems: string[] = [];
    for (const s of [allA, allB]) problems.push(...seqProblems(s.label, s.events, lastSeq));
    perOrder.forEach((s, i) => problems.push(...seqProblems(s.label, s.events, new Map([[ids[i]!, lastSeq.get(ids[i]!)!]]))));
    for (const s of [allA, allB, ...perOrder]) {
      for (let i = 1; i < s.events.length; i++) {
        if (s.events[i]!.cursor <= s.events[i - 1]!.cursor) {
          problems.push(`${s.label}: cursor does not increase at #${i}: ${tag(s.events[i - 1]!)} then ${tag(s.events[i]!)}`);
          break;
        }
      }
    }
    const wantAll = await feed(A, net.ops, 'all', start);
    problems.push(...streamProblems(allA.label, allA.events, wantAll), ...streamProblems(allB.label, allB.events, wantAll));
    // The feed, too, carries each order in seq order.
    problems.push(...seqProblems('feed all', wantAll, lastSeq));
    expect(problems).toEqual([]);
    console.log(`t3: ${tasks.length} requests (40 batches, 160 singles), ${total} events on ${ids.length} orders`);
  }, 60_000);

  it('SIGKILL of the instance a subscriber is on: it resumes on B with its last cursor and gets everything exactly once', async () => {
    const orders = await pool(Array.from({ length: 5 }, () => () => createOrder(B, 'A')), 5);
    const s = subscriber('t4 all@C→B', { token: net.ops }, 'all');
    await s.open(C); // live from now; s.start is the ack's cursor
    const writer = startWriter([B], orders.map((o) => o.id), 2);
    await until(() => s.events.length >= 40 || writer.errors.length > 0, 15_000, 'the subscriber on C to receive 40 events');
    expect(writer.errors).toEqual([]);

    const code = await withTimeout(C.kill('SIGKILL'), 10_000, 'C to die');
    expect(code).toBe('SIGKILL');
    await until(() => !s.socket!.connected, 10_000, 'the socket to see C gone');
    const before = s.events.length;
    const writtenAtKill = writer.written.length;
    const resumeAfter = s.last;
    await s.open(B, resumeAfter);
    await until(() => s.events.length >= before + 40 || writer.errors.length > 0, 15_000, 'events after resuming on B');
    await writer.stop();
    expect(writer.errors).toEqual([]);

    const want = await settle(() => s.events.length, () => feed(B, net.ops, 'all', s.start!), writer.written.map((e) => e.id));
    expect(streamProblems(s.label, s.events, want)).toEqual([]);
    // "Live from now" starts at the tail's safe horizon, which a busy cluster can hold just behind
    // the five orders' `created` events: those may then be in the stream too. Nothing else may.
    const written = new Set(writer.written.map((e) => e.id));
    const orderIds = new Set(orders.map((o) => o.id));
    const extra = want.filter((e) => !written.has(e.id));
    expect(extra.filter((e) => !(e.type === 'created' && orderIds.has(e.orderId))).map(tag)).toEqual([]);
    expect(want.length - extra.length).toBe(writer.written.length);
    console.log(
      `t4: ${before} events received on C before SIGKILL (writer had ${writtenAtKill} acknowledged), ` +
        `${s.events.length - before} after resuming on B; ${writer.written.length} written in all`,
    );
  }, 90_000);

  it('SSE: read on A, stop, resume on B with Last-Event-ID: the concatenation is the feed, exactly once', async () => {
    const topic = `customer:${net.customerA.id}`;
    const token = net.customerA.token;
    const orders = await pool([() => createOrder(B, 'A'), () => createOrder(B, 'A'), () => createOrder(B, 'A'), () => createOrder(B, 'B')], 4);
    const start = await head(A, token, topic);
    const writer = startWriter([B], orders.map((o) => o.id), 2);

    const first = new SseReader(`${A.baseUrl}/v1/stream?topic=${topic}&after=${start}`, { authorization: `Bearer ${token}` });
    sseReaders.add(first);
    expect(await first.opened()).toBe(200);
    await until(() => first.events.length >= 25 || writer.errors.length > 0, 15_000, 'SSE events on A');
    await first.stop();
    const lastId = first.ids.at(-1)!;

    const second = new SseReader(`${B.baseUrl}/v1/stream?topic=${topic}`, { authorization: `Bearer ${token}`, 'last-event-id': lastId });
    sseReaders.add(second);
    expect(await second.opened()).toBe(200);
    await until(() => second.events.length >= 25 || writer.errors.length > 0, 15_000, 'SSE events on B');
    await writer.stop();
    expect(writer.errors).toEqual([]);

    const mustInclude = writer.written.filter((e) => e.orderId !== orders[3]!.id).map((e) => e.id);
    const want = await settle(() => first.events.length + second.events.length, () => feed(A, token, topic, start), mustInclude);
    await second.stop();
    const got = [...first.events, ...second.events];
    const problems = streamProblems('t5 SSE A+B', got, want);
    // Each block's id is its event's cursor.
    const ids = [...first.ids, ...second.ids];
    const badIds = got.filter((e, i) => ids[i] !== e.cursor).map(tag);
    if (badIds.length) problems.push(`t5 SSE: id: differs from the cursor for ${badIds.slice(0, 5).join(' ')}`);
    expect(problems).toEqual([]);
    // As in t4: the head can stand just behind the new orders' `created` events while the cluster's
    // horizon is held, and then the feed after it holds them too. Nothing else may be extra.
    const createdHere = (e: { type: string; orderId: string }) => e.type === 'created' && orders.some((o) => o.id === e.orderId);
    expect(want.filter((e) => !createdHere(e)).map((e) => e.id).sort()).toEqual(mustInclude.sort());
    expect([...first.closings, ...second.closings]).toEqual([]);
    console.log(`t5: ${first.events.length} SSE events on A, ${second.events.length} on B after Last-Event-ID`);
  }, 60_000);

  it('MEASURE: replay of 10,000 missed events after reconnecting; commit-to-receipt latency across instances', async () => {
    // (a) A subscriber on B, live, goes away; 10,000 events are written through A; it comes back with its cursor.
    const s = subscriber('t6 all@B', { token: net.ops }, 'all', () => B);
    await s.open(B);
    s.close();
    await until(() => !s.socket!.connected, 5000, 'the socket to close');
    const orders = await pool(Array.from({ length: 20 }, () => () => createOrder(A, 'A')), 4);
    const ops = api(A, net.ops);
    const w0 = performance.now();
    const written = (
      await pool(
        Array.from({ length: 20 }, (_, b) => () => batch(ops, Array.from({ length: 500 }, (_, i) => note(orders[i % 20]!.id, `bulk ${b}.${i}`)))),
        2,
      )
    ).flat();
    const writeMs = performance.now() - w0;
    expect(written).toHaveLength(10_000);

    const back = subscriber('t6 all@B resumed', { token: net.ops }, 'all', () => B);
    const mineIds = new Set(written.map((e) => e.id));
    const r0 = performance.now();
    await back.open(B, s.last);
    const ackMs = performance.now() - r0;
    await until(() => back.events.filter((e) => mineIds.has(e.id)).length >= 10_000, 60_000, '10,000 replayed events');
    const replayMs = performance.now() - r0;
    const want = await settle(() => back.events.length, () => feed(A, net.ops, 'all', s.start!), mineIds);
    expect(streamProblems(back.label, back.events, want)).toEqual([]);
    const byCursor = [...written].sort((x, y) => (x.cursor < y.cursor ? -1 : 1)).map((e) => e.id);
    expect(want.filter((e) => mineIds.has(e.id)).map((e) => e.id)).toEqual(byCursor);
    console.log(
      `MEASURE write 10000 events in 20 batches of 500 (2 concurrent) through A: ${writeMs.toFixed(0)} ms (${((10_000 / writeMs) * 1000).toFixed(0)} events/s)`,
    );
    console.log(
      `MEASURE replay 10000 missed events to a socket on B after reconnecting with after: ${replayMs.toFixed(0)} ms ` +
        `(${((10_000 / replayMs) * 1000).toFixed(0)} events/s; subscribe ack ${ackMs.toFixed(0)} ms; slow-consumer resumes ${back.resumes})`,
    );
    back.close();

    // (b) 200 single posts through A, one at a time; the time from the HTTP response to the socket event on B.
    // Live from now first, then the order: its `created` event then lies after the subscriber's
    // start for certain. The other way round, a busy cluster's held horizon could put the start
    // just behind it, and the stream would hold it or not by timing.
    const live = subscriber('t6 live@B', { token: net.ops }, 'all');
    await live.open(B);
    const order = await createOrder(A, 'A');
    const latencies: number[] = [];
    const posted: Event[] = [];
    for (let i = 0; i < 200; i++) {
      const e = await post(ops, order.id, { type: 'note', text: `latency ${i}` });
      const answered = performance.now();
      posted.push(e);
      await until(() => live.arrivals.has(e.id), 5000, `event ${i} on B`);
      latencies.push(live.arrivals.get(e.id)! - answered);
    }
    const mustLive = [order.created.id, ...posted.map((e) => e.id)];
    const wantLive = await settle(() => live.events.length, () => feed(A, net.ops, 'all', live.start!), mustLive);
    expect(streamProblems(live.label, live.events, wantLive)).toEqual([]);
    expect(wantLive.map((e) => e.id)).toEqual(mustLive);
    const before = latencies.filter((x) => x < 0).length;
    console.log(
      `MEASURE commit-to-receipt latency A→B over ${latencies.length} single posts: median ${median(latencies).toFixed(1)} ms, ` +
        `p90 ${percentile(latencies, 90).toFixed(1)} ms, max ${Math.max(...latencies).toFixed(1)} ms, min ${Math.min(...latencies).toFixed(1)} ms ` +
        `(${before} events arrived before the HTTP response was read)`,
    );
  }, 120_000);
});
