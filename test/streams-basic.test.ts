import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { io as connect, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClientToServerEvents, ServerToClientEvents, StreamedEvent, SubscribeAck } from '../src/streams/protocol.js';
import { startTestApp, type TestApp } from './helpers/app.js';
import { ON_REAL_POSTGRES } from './helpers/env.js';
import { createWorld, type World } from './helpers/world.js';

type ClientSocket = Socket<ServerToClientEvents, ClientToServerEvents>;
let t: TestApp;
let w: World;
const sockets: ClientSocket[] = [];
beforeAll(async () => {
  t = await startTestApp();
  w = await createWorld(t);
});
afterAll(async () => {
  for (const s of sockets) s.disconnect();
  await t?.close();
});

async function open(auth: Record<string, string>): Promise<{ socket: ClientSocket; events: StreamedEvent[] }> {
  const socket: ClientSocket = connect(`${t.baseUrl}/v1`, { path: '/socket.io', auth, transports: ['websocket'], reconnection: false });
  sockets.push(socket);
  const events: StreamedEvent[] = [];
  socket.on('event', (e) => events.push(e));
  await new Promise<void>((resolve, reject) => {
    socket.on('connect', () => resolve());
    socket.on('connect_error', reject);
  });
  return { socket, events };
}

const subscribe = (socket: ClientSocket, topic: string, after?: string) =>
  new Promise<SubscribeAck>((resolve) => socket.emit('subscribe', after ? { topic, after } : { topic }, resolve));

// Streams serve what committed below the horizon, the oldest transaction still running in the
// whole cluster: while another test file builds indexes or loads a world on the same Postgres,
// a just-committed event can wait seconds. What these tests check is order and completeness,
// so they wait for it rather than race it.
async function until(cond: () => boolean, ms = 20_000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A gauge or counter of /metrics (`name` with its labels, as printed); 0 if not printed yet. */
async function metric(name: string, orZero = false): Promise<number> {
  const text = (await t.api.get('/metrics')).text as string;
  const m = new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\d+)$`, 'm').exec(text);
  if (!m && !orZero) throw new Error(`${name} missing from /metrics`);
  return Number(m?.[1] ?? 0);
}

// Runs first, while no one has subscribed to this instance yet.
describe('an instance no one subscribes to', () => {
  it('reads nothing of its own commits, and the first subscriber after still gets every event after its cursor', async () => {
    const read = await metric('orderstream_stream_events_read');
    const order = await w.createOrder();
    const first = await w.post(w.fab.api, order.id, { type: 'stage_started', stage: 'review' });
    await w.post(w.fab.api, order.id, { type: 'stage_progress', stage: 'review', progress: 50 });
    await w.post(w.fab.api, order.id, { type: 'stage_completed', stage: 'review' });
    // Longer than the tail's poll (STREAM_POLL_MS, 1 s): with a subscriber it would have read them by now.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await metric('orderstream_stream_events_read'), 'events read with no one subscribed').toBe(read);

    const { socket, events } = await open({ token: (w.customerA.api as any).credentials.token });
    expect((await subscribe(socket, `order:${order.id}`, first.cursor)).ok).toBe(true);
    await until(() => events.some((e) => e.seq === 4));
    await w.post(w.fab.api, order.id, { type: 'stage_started', stage: 'cam' });
    await until(() => events.some((e) => e.seq === 5));
    expect(events.map((e) => e.seq), 'after its cursor, each once, in order').toEqual([3, 4, 5]);
    expect(await metric('orderstream_stream_events_read'), 'the tail reads again once someone listens').toBeGreaterThan(read);
    socket.disconnect();
  }, 60_000);
});

describe('telling the other instances', () => {
  // The NOTIFY that wakes the other instances' tails rides in the transaction that appends: sent
  // alone, after the commit, it cost a transaction, a round trip and a WAL flush of its own.
  it.skipIf(!ON_REAL_POSTGRES)('carries one NOTIFY in each transaction that appends, and sends none alone', async () => {
    const listener = new pg.Client({ connectionString: t.database.url });
    await listener.connect();
    const heard: string[] = [];
    listener.on('notification', (n) => heard.push(n.payload ?? ''));
    await listener.query('listen orderstream');
    try {
      const order = await w.createOrder(); // a write of another kind: it still sends its NOTIFY alone
      await until(() => heard.length === 1);
      const alone = await metric('orderstream_notifications_total{way="alone"}', true);
      const carried = await metric('orderstream_notifications_total{way="carried"}', true);
      const stages = ['review', 'cam', 'drilling'];
      for (const stage of stages) await w.post(w.fab.api, order.id, { type: 'stage_completed', stage });
      await until(() => heard.length === 1 + stages.length);
      await new Promise((r) => setTimeout(r, 300)); // and no more than that
      expect(heard.length, 'one notification per post').toBe(1 + stages.length);
      expect(new Set(heard).size, 'all from this instance').toBe(1);
      expect(await metric('orderstream_notifications_total{way="carried"}')).toBe(carried + stages.length);
      expect(await metric('orderstream_notifications_total{way="alone"}', true), 'none sent alone').toBe(alone);
    } finally {
      await listener.end();
    }
  }, 60_000);
});

describe("the tail's read behind the commit", () => {
  // On a real Postgres the tail's read of what an append committed goes in the same write as
  // the COMMIT, on the same connection (db/flight.ts Rider): its rows come back with the commit,
  // with no round trip and no backend woken for a read of its own.
  it.skipIf(!ON_REAL_POSTGRES)('reads each post behind its commit, and delivers every event once, in order', async () => {
    const order = await w.createOrder();
    const { socket, events } = await open({ token: (w.customerA.api as any).credentials.token });
    expect((await subscribe(socket, `order:${order.id}`)).ok).toBe(true);
    const behind = await metric('orderstream_stream_tail_reads{way="behind_commit"}', true);
    const notes = ['one', 'two', 'three', 'four', 'five'];
    for (const text of notes) await w.post(w.fab.api, order.id, { type: 'note', text });
    await until(() => events.filter((e) => e.seq > 1).length === notes.length);
    expect(events.filter((e) => e.seq > 1).map((e) => e.seq), 'each once, in order').toEqual([2, 3, 4, 5, 6]);
    expect(await metric('orderstream_stream_tail_reads{way="behind_commit"}'), 'one read behind each commit').toBe(behind + notes.length);
    socket.disconnect();
  }, 60_000);
});

describe('socket streams', () => {
  it('delivers live events of a subscribed order, in seq order, then replays after a cursor', async () => {
    const order = await w.createOrder();
    const { socket, events } = await open({ token: (w.customerA.api as any).credentials.token });
    const ack = await subscribe(socket, `order:${order.id}`);
    expect(ack.ok).toBe(true);
    await w.post(w.fab.api, order.id, { type: 'stage_completed', stage: 'review' });
    await w.post(w.fab.api, order.id, { type: 'stage_progress', stage: 'cam', progress: 30 });
    await until(() => events.some((e) => e.seq === 3));
    // Live from now is from where this instance's tail has read: while the horizon is held back
    // (a transaction running anywhere in the cluster), the order's `created` event, committed just
    // before, may not be read yet, and then comes first. Never anything else, never twice.
    const seqs = events.map((e) => e.seq);
    expect(seqs).toEqual(seqs[0] === 1 ? [1, 2, 3] : [2, 3]);
    expect(events[0]!.topic).toBe(`order:${order.id}`);
    const second = events.find((e) => e.seq === 2)!;

    const { socket: again, events: replayed } = await open({ token: (w.ops as any).credentials.token });
    const ack2 = await subscribe(again, `customer:${w.customerA.id}`, second.cursor);
    expect(ack2.ok).toBe(true);
    await until(() => replayed.length >= 1);
    await w.post(w.fab.api, order.id, { type: 'stage_completed', stage: 'cam' });
    await until(() => replayed.some((e) => e.seq === 4 && e.orderId === order.id));
    const mine = replayed.filter((e) => e.orderId === order.id).map((e) => e.seq);
    expect(mine).toEqual([3, 4]);
  }, 60_000);

  it('writes a burst of events to a subscriber in a few system calls, every event once and in order', async () => {
    // The service's side of the next TCP connection: each _write or _writev is one system call.
    const writes = { calls: 0 };
    const server = t.app.server;
    const counted = new Promise<void>((resolve) =>
      server.once('connection', (tcp: { _write: (...a: unknown[]) => unknown; _writev?: (...a: unknown[]) => unknown }) => {
        for (const m of ['_write', '_writev'] as const) {
          const original = tcp[m]!;
          tcp[m] = function (this: unknown, ...a: unknown[]) {
            writes.calls++;
            return original.apply(this, a);
          };
        }
        resolve();
      }),
    );
    const order = await w.createOrder();
    const { socket, events } = await open({ token: (w.customerA.api as any).credentials.token });
    await counted;
    expect((await subscribe(socket, `order:${order.id}`)).ok).toBe(true);
    await w.post(w.fab.api, order.id, { type: 'stage_completed', stage: 'review' });
    await until(() => events.some((e) => e.seq === 2));
    const before = { calls: writes.calls, seen: events.length };
    // One transaction, 60 events: the tail reads them together and sends them to the socket at once.
    const items = Array.from({ length: 60 }, (_, i) => ({ orderId: order.id, idempotencyKey: randomUUID(), type: 'note', text: `burst ${i}` }));
    const r = await w.fab.api.post('/v1/events/batch', { events: items });
    expect(r.status, r.text).toBe(200);
    expect(r.body.results.filter((x: { status: number }) => x.status !== 201)).toEqual([]);
    await until(() => events.some((e) => e.seq === 62));
    const burst = events.slice(before.seen).map((e) => e.seq);
    expect(burst).toEqual(Array.from({ length: 60 }, (_, i) => i + 3));
    // Engine.IO writes the first at once and queues the rest behind it; they leave in one write
    // (src/streams/write-bursts.ts), where each frame took one of its own before (60 or more).
    expect(writes.calls - before.calls).toBeLessThan(10);
  }, 60_000);

  it('refuses topics the caller may not see, with the REST statuses', async () => {
    const order = await w.createOrder();
    const { socket } = await open({ token: (w.customerB.api as any).credentials.token });
    expect(await subscribe(socket, `order:${order.id}`)).toMatchObject({ ok: false, error: { status: 404 } });
    expect(await subscribe(socket, `customer:${w.customerA.id}`)).toMatchObject({ ok: false, error: { status: 404 } });
    expect(await subscribe(socket, 'all')).toMatchObject({ ok: false, error: { status: 403 } });
    expect(await subscribe(socket, 'bogus')).toMatchObject({ ok: false, error: { status: 400 } });
  });

  it('refuses a handshake without valid credentials', async () => {
    await expect(open({ token: 'nope' })).rejects.toThrow(/token invalid/);
    await expect(open({})).rejects.toThrow(/required/);
  });
});

describe('feed and SSE', () => {
  it('serves the same events over HTTP catch-up and SSE, resuming from Last-Event-ID', async () => {
    const order = await w.createOrder();
    await w.post(w.fab.api, order.id, { type: 'stage_completed', stage: 'review' });
    let feed = await w.ops.get(`/v1/feed?topic=order:${order.id}`);
    for (const end = Date.now() + 20_000; feed.body.items?.length < 2 && Date.now() < end; ) {
      await new Promise((r) => setTimeout(r, 50));
      feed = await w.ops.get(`/v1/feed?topic=order:${order.id}`);
    }
    expect(feed.status).toBe(200);
    expect(feed.body.items.map((e: any) => e.seq)).toEqual([1, 2]);
    const controller = new AbortController();
    const res = await fetch(`${t.baseUrl}/v1/stream?topic=order:${order.id}`, {
      headers: { authorization: `Bearer ${(w.ops as any).credentials.token}`, 'last-event-id': feed.body.items[0].cursor },
      signal: controller.signal,
    });
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const reader = res.body!.getReader();
    let text = '';
    const readUntil = async (pred: () => boolean) => {
      while (!pred()) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
    };
    await readUntil(() => text.includes('"seq":2'));
    await w.post(w.fab.api, order.id, { type: 'stage_started', stage: 'cam' });
    await readUntil(() => text.includes('"seq":3'));
    const ids = [...text.matchAll(/^id: (\w+)$/gm)].map((m) => m[1]);
    expect(ids).toHaveLength(2);
    expect(ids[0]).toBe(feed.body.items[1].cursor);
    controller.abort();
  }, 60_000);
});
