// Abuse limits, each with a clear error while everyone else is still served: open streams per
// caller (sockets and SSE), guessing credentials counted against the address, slow clients
// (slowloris headers, a trickled body, idle connections), and many slow clients at once. The
// per-caller request limit, body size and batch size are in test/bad-input.test.ts, topics per
// socket and payload size in test/streams-guards.test.ts.
import { randomBytes, randomUUID } from 'node:crypto';
import { connect as tcp, type Socket as TcpSocket } from 'node:net';
import { io as connect, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from './helpers/app.js';
import { sleep, until } from './helpers/ingest-load.js';
import { createWorld, type World } from './helpers/world.js';

const opened: Array<{ close(): void }> = [];
afterAll(() => opened.forEach((s) => s.close()));

function socketOf(t: TestApp, auth: Record<string, string>): Promise<{ socket?: Socket; error?: { status: number; message: string } }> {
  return new Promise((resolve) => {
    const socket = connect(`${t.baseUrl}/v1`, { path: '/socket.io', auth, transports: ['websocket'], reconnection: false, forceNew: true });
    opened.push(socket);
    socket.once('connect', () => resolve({ socket }));
    socket.once('connect_error', (e: Error & { data?: { status: number } }) => resolve({ error: { status: e.data?.status ?? 0, message: e.message } }));
  });
}

async function sseStatus(t: TestApp, token: string): Promise<{ status: number; body: string; close(): void }> {
  const controller = new AbortController();
  const res = await fetch(`${t.baseUrl}/v1/stream?topic=customer:${JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).customerId}`, {
    headers: { authorization: `Bearer ${token}` },
    signal: controller.signal,
  });
  const streaming = (res.headers.get('content-type') ?? '').startsWith('text/event-stream');
  const s = { status: res.status, body: streaming ? '' : await res.text(), close: () => controller.abort() };
  opened.push(s);
  return s;
}

describe('open streams per caller (STREAM_MAX_CONNECTIONS_PER_CALLER=3)', () => {
  let t: TestApp;
  let w: World;
  beforeAll(async () => {
    t = await startTestApp({ STREAM_MAX_CONNECTIONS_PER_CALLER: '3', RATE_LIMIT_ANONYMOUS_PER_MINUTE: '100000' });
    w = await createWorld(t);
  });
  afterAll(() => t?.close());

  it('a 4th socket or SSE stream of one caller is refused 429, others connect, and a closed one frees its slot', async () => {
    const tokenA = (w.customerA.api as any).credentials.token as string;
    const tokenB = (w.customerB.api as any).credentials.token as string;
    const a1 = await socketOf(t, { token: tokenA });
    const a2 = await socketOf(t, { token: tokenA });
    const sse = await sseStatus(t, tokenA); // sockets and SSE count together
    expect([a1.socket?.connected, a2.socket?.connected, sse.status]).toEqual([true, true, 200]);

    const refused = await socketOf(t, { token: tokenA });
    expect(refused.error).toEqual({ status: 429, message: expect.stringMatching(/at most 3 open streams/) });
    const refusedSse = await sseStatus(t, tokenA);
    expect(refusedSse.status).toBe(429);
    expect(JSON.parse(refusedSse.body)).toMatchObject({ status: 429, type: expect.stringMatching(/too-many-connections$/) });
    // a token of the same customer but another subject is another caller
    const sameCustomerOtherSub = await t.token({ role: 'customer', customerId: w.customerA.id, sub: 'another-engineer' });
    expect((await socketOf(t, { token: sameCustomerOtherSub })).socket?.connected).toBe(true);

    // others are served meanwhile: another customer, and plain requests of the throttled one
    expect((await socketOf(t, { token: tokenB })).socket?.connected).toBe(true);
    expect((await w.customerA.api.get(`/v1/customers/${w.customerA.id}`)).status).toBe(200);
    // refused handshakes with bad credentials take no slot of anyone
    for (let i = 0; i < 5; i++) expect((await socketOf(t, { token: 'junk' })).error?.status).toBe(401);

    // closing one socket and the SSE stream frees two slots
    a1.socket!.disconnect();
    sse.close();
    await until(async () => Boolean((await socketOf(t, { token: tokenA })).socket), 5000, 'a slot freed by a closed socket');
    await until(async () => (await sseStatus(t, tokenA)).status === 200, 5000, 'a slot freed by a closed SSE stream');
    expect((await socketOf(t, { token: tokenA })).error?.status).toBe(429);
  });

  it('a factory is one caller whatever key it uses', async () => {
    const k2 = (await w.admin.post(`/v1/factories/${w.fab.id}/api-keys`, { label: 'second' })).body.key as string;
    const k1 = (w.fab.api as any).credentials.apiKey as string;
    const got = [await socketOf(t, { apiKey: k1 }), await socketOf(t, { apiKey: k2 }), await socketOf(t, { apiKey: k1 }), await socketOf(t, { apiKey: k2 })];
    expect(got.map((g) => g.socket?.connected ?? g.error?.status)).toEqual([true, true, true, 429]);
  });
});

describe('guessing credentials is throttled by address (RATE_LIMIT_ANONYMOUS_PER_MINUTE=5)', () => {
  let t: TestApp;
  let w: World;
  beforeAll(async () => {
    t = await startTestApp({ RATE_LIMIT_ANONYMOUS_PER_MINUTE: '5' });
    w = await createWorld(t);
  });
  afterAll(() => t?.close());

  it('the 6th guessed key or forged token from one address is 429 with Retry-After; genuine callers are still served', async () => {
    const guesses = Array.from({ length: 8 }, (_, i): Record<string, string> =>
      i % 2 ? { 'x-api-key': `osk_${randomUUID().replaceAll('-', '')}_${randomBytes(32).toString('base64url')}` } : { authorization: `Bearer ${randomBytes(40).toString('base64url')}` },
    );
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    for (const headers of guesses) {
      const r = await fetch(`${t.baseUrl}/v1/orders`, { headers });
      statuses.push(r.status);
      if (r.status === 429) {
        retryAfter = r.headers.get('retry-after');
        expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      }
      await r.text();
    }
    expect(statuses).toEqual([401, 401, 401, 401, 401, 429, 429, 429]);
    expect(Number(retryAfter)).toBeGreaterThan(0);
    // the same address with a genuine key or token is another bucket: served
    expect((await w.fab.api.get('/v1/orders')).status).toBe(200);
    expect((await w.ops.get('/v1/orders')).status).toBe(200);
  });
});

// ---------------------------------------------------------------------------------------------
// Slow clients

/** A raw connection that writes `chunks` one by one, `everyMs` apart; resolves with what it read and when it closed. */
function trickle(t: TestApp, chunks: string[], everyMs: number): { done: Promise<{ text: string; closedAfterMs: number; sent: number }>; socket: TcpSocket } {
  const { port } = new URL(t.baseUrl);
  const socket = tcp(Number(port), '127.0.0.1');
  opened.push({ close: () => socket.destroy() });
  const started = performance.now();
  let text = '';
  let sent = 0;
  socket.on('data', (d) => (text += d.toString('latin1')));
  socket.on('error', () => undefined);
  const done = new Promise<{ text: string; closedAfterMs: number; sent: number }>((resolve) => {
    socket.on('close', () => {
      clearInterval(timer);
      resolve({ text, closedAfterMs: performance.now() - started, sent });
    });
  });
  const timer = setInterval(() => {
    if (sent < chunks.length && socket.writable) socket.write(chunks[sent++]!);
  }, everyMs);
  return { done, socket };
}

describe('slow clients (HTTP_HEADERS_TIMEOUT_MS=1500, HTTP_REQUEST_TIMEOUT_MS=3000)', () => {
  let t: TestApp;
  let w: World;
  beforeAll(async () => {
    t = await startTestApp({ HTTP_HEADERS_TIMEOUT_MS: '1500', HTTP_REQUEST_TIMEOUT_MS: '3000', RATE_LIMIT_ANONYMOUS_PER_MINUTE: '100000' });
    w = await createWorld(t);
  });
  afterAll(() => t?.close());

  const expect408 = (r: { text: string }) => {
    const [head, body] = r.text.split('\r\n\r\n');
    expect(head, r.text).toMatch(/^HTTP\/1\.1 408/);
    expect(head).toMatch(/content-type: application\/problem\+json/i);
    expect(JSON.parse(body!)).toMatchObject({ status: 408, type: expect.stringMatching(/request-timeout$/) });
  };

  it('slowloris: headers sent a byte at a time are cut off with 408 problem+json after the headers timeout, while others are served', async () => {
    const header = 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'a'.repeat(200);
    const slow = Array.from({ length: 20 }, () => trickle(t, [...header], 100)); // would take 20+ s to finish
    // meanwhile a normal client is served, promptly
    await sleep(300);
    for (let i = 0; i < 5; i++) {
      const r = await fetch(`${t.baseUrl}/v1/orders`, { headers: { authorization: `Bearer ${(w.ops as any).credentials.token}` } });
      expect(r.status).toBe(200);
      await r.text();
    }
    const results = await Promise.all(slow.map((s) => s.done));
    for (const r of results) {
      expect408(r);
      // cut off after the 1.5 s headers timeout (checked every second), long before it finished
      expect(r.closedAfterMs).toBeGreaterThan(1400);
      expect(r.closedAfterMs).toBeLessThan(1500 + 1000 + 1500);
      expect(r.sent).toBeLessThan(header.length);
    }
  });

  it('a body trickled slower than the request timeout is cut off with 408; nothing is written', async () => {
    const body = JSON.stringify({ name: 'Trickle Co', country: 'DE' });
    const head = `POST /v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${(w.admin as any).credentials.token}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    const before = (await w.admin.get('/v1/customers')).body;
    const r = await trickle(t, [head, ...body], 150).done; // 40 bytes at 150 ms: 6 s
    expect408(r);
    expect(r.closedAfterMs).toBeLessThan(3000 + 1000 + 1500);
    expect((await w.admin.get('/v1/customers')).body).toEqual(before);
  });

  it('streams are not requests: a socket (polling, then websocket) and an SSE stream outlive both timeouts', async () => {
    const token = (w.ops as any).credentials.token as string;
    const s = connect(`${t.baseUrl}/v1`, { path: '/socket.io', auth: { token }, transports: ['polling', 'websocket'], reconnection: false, forceNew: true });
    opened.push(s);
    await new Promise<void>((r) => s.once('connect', () => r()));
    const controller = new AbortController();
    const res = await fetch(`${t.baseUrl}/v1/stream?topic=all`, { headers: { authorization: `Bearer ${token}` }, signal: controller.signal });
    opened.push({ close: () => controller.abort() });
    let ended = false;
    void res.body!.pipeTo(new WritableStream()).catch(() => undefined).finally(() => (ended = true));
    await sleep(3000 + 1000 + 500);
    expect(s.connected).toBe(true);
    expect(ended).toBe(false);
  });

  it('a connection that sends nothing is closed after the headers timeout', async () => {
    const r = await trickle(t, [], 1000).done;
    expect(r.closedAfterMs).toBeLessThan(1500 + 1000 + 1500);
  });
});
