// Compressed answers for clients that ask, and compressed request bodies, over real HTTP with the
// encoding headers set by hand (node:http neither asks for nor undoes any encoding): the same
// bytes once inflated, small answers and streams left alone, and a bad compressed body refused
// with a problem that names it and changes nothing.
import { randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { brotliDecompressSync, deflateSync, gunzipSync, gzipSync, inflateSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from './helpers/app.js';
import { fingerprint } from './helpers/hostile.js';
import { createWorld, type World } from './helpers/world.js';

interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The bytes as they came over the wire. */
  wire: Buffer;
}

function send(t: TestApp, path: string, o: { method?: string; headers?: Record<string, string>; body?: Buffer; readMs?: number } = {}): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(new URL(path, t.baseUrl), { method: o.method ?? 'GET', headers: o.headers }, (res) => {
      const chunks: Buffer[] = [];
      const done = () => resolve({ status: res.statusCode ?? 0, headers: res.headers, wire: Buffer.concat(chunks) });
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', done);
      // A stream never ends by itself: what arrived within readMs is judged.
      if (o.readMs) setTimeout(() => (req.destroy(), done()), o.readMs);
    });
    req.on('error', (err) => (o.readMs ? undefined : reject(err)));
    req.end(o.body);
  });
}

/** A page as a client reads it, each order's projected instant left out: it is projected from the instant of the read. */
const withoutProjection = (json: string) => JSON.stringify(JSON.parse(json), (k, v) => (k === 'projectedAt' ? undefined : v));
/** The same for the CSV export: its projectedAt column blanked. */
const csvWithoutProjection = (csv: string) => {
  const [head, ...rows] = csv.trimEnd().split('\n');
  const at = head!.split(',').indexOf('projectedAt');
  return [head, ...rows.map((r) => r.split(',').map((c, i) => (i === at ? '' : c)).join(','))];
};

const inflate: Record<string, (b: Buffer) => Buffer> = { br: brotliDecompressSync, gzip: gunzipSync, deflate: inflateSync };

let t: TestApp;
let w: World;
let opsToken: string;
beforeAll(async () => {
  t = await startTestApp({ BODY_LIMIT_BYTES: '65536' });
  w = await createWorld(t);
  opsToken = await t.token({ role: 'ops' });
  for (let i = 0; i < 3; i++) await w.createOrder({ externalRef: `zip-${i}` });
});
afterAll(() => t?.close());

const asOps = (headers: Record<string, string> = {}) => ({ authorization: `Bearer ${opsToken}`, ...headers });

describe('answers', () => {
  it.each(['br', 'gzip', 'deflate'])('a list page asked for with %s comes compressed, and inflates to the plain answer', async (encoding) => {
    const plain = await send(t, '/v1/orders?limit=50', { headers: asOps() });
    expect(plain.status).toBe(200);
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.wire.length).toBeGreaterThan(1024);

    const packed = await send(t, '/v1/orders?limit=50', { headers: asOps({ 'accept-encoding': encoding }) });
    expect(packed.status).toBe(200);
    expect(packed.headers['content-encoding']).toBe(encoding);
    expect(String(packed.headers.vary)).toMatch(/accept-encoding/i);
    expect(packed.headers['content-type']).toMatch(/^application\/json/);
    expect(packed.wire.length).toBeLessThan(plain.wire.length / 3);
    expect(withoutProjection(inflate[encoding]!(packed.wire).toString())).toBe(withoutProjection(plain.wire.toString()));
  });

  it('takes brotli first when a client accepts several, and honours q=0', async () => {
    const both = await send(t, '/v1/orders?limit=50', { headers: asOps({ 'accept-encoding': 'gzip, deflate, br' }) });
    expect(both.headers['content-encoding']).toBe('br');
    const noBr = await send(t, '/v1/orders?limit=50', { headers: asOps({ 'accept-encoding': 'br;q=0, gzip' }) });
    expect(noBr.headers['content-encoding']).toBe('gzip');
  });

  it('sends an answer under 1 KB as it is: a posted event', async () => {
    const order = await w.createOrder();
    const body = Buffer.from(JSON.stringify({ type: 'stage_started', stage: 'review' }));
    const r = await send(t, `/v1/orders/${order.id}/events`, {
      method: 'POST',
      body,
      headers: { 'x-api-key': (w.fab.api as any).credentials.apiKey, 'content-type': 'application/json', 'idempotency-key': randomUUID(), 'accept-encoding': 'br, gzip' },
    });
    expect(r.status, r.wire.toString()).toBe(201);
    expect(r.headers['content-encoding']).toBeUndefined();
    expect(JSON.parse(r.wire.toString())).toMatchObject({ orderId: order.id, seq: 2 });
  });

  it('streams server-sent events uncompressed, each event readable as it comes', async () => {
    const order = await w.createOrder();
    const reading = send(t, `/v1/stream?topic=order:${order.id}`, { headers: asOps({ 'accept-encoding': 'br, gzip' }), readMs: 1500 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await w.post(w.fab.api, order.id, { type: 'note', text: 'heard live' });
    const r = await reading;
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(r.headers['content-encoding']).toBeUndefined();
    expect(r.wire.toString()).toMatch(/event: event\ndata: .*heard live/);
  });

  it('compresses the board\'s scripts, with a weak ETag that a revalidation in any encoding matches', async () => {
    const plain = await send(t, '/board/vendor/chart.umd.min.js');
    const packed = await send(t, '/board/vendor/chart.umd.min.js', { headers: { 'accept-encoding': 'br' } });
    expect(packed.headers['content-encoding']).toBe('br');
    expect(brotliDecompressSync(packed.wire).equals(plain.wire)).toBe(true);
    // One tag for two byte sequences: it must be weak (RFC 9110 8.8.1).
    expect(packed.headers.etag).toMatch(/^W\/"/);
    expect(packed.headers.etag).toBe(plain.headers.etag);
    const again = await send(t, '/board/vendor/chart.umd.min.js', { headers: { 'accept-encoding': 'gzip', 'if-none-match': String(packed.headers.etag) } });
    expect(again.status).toBe(304);
  });

  it('compresses the CSV export too', async () => {
    const plain = await send(t, '/v1/orders.csv', { headers: asOps() });
    const packed = await send(t, '/v1/orders.csv', { headers: asOps({ 'accept-encoding': 'gzip' }) });
    expect([plain.status, packed.status]).toEqual([200, 200]);
    expect(packed.headers['content-encoding']).toBe('gzip');
    const csv = csvWithoutProjection(gunzipSync(packed.wire).toString());
    expect(csv.length).toBeGreaterThan(3);
    expect(csv).toEqual(csvWithoutProjection(plain.wire.toString()));
  });
});

describe('request bodies', () => {
  const batch = (orderId: string, n: number) => ({
    events: Array.from({ length: n }, (_, i) => ({ orderId, idempotencyKey: randomUUID(), type: 'note', text: `zipped note ${i}` })),
  });
  const post = (body: Buffer, encoding: string) =>
    send(t, '/v1/events/batch', {
      method: 'POST',
      body,
      headers: { 'x-api-key': (w.fab.api as any).credentials.apiKey, 'content-type': 'application/json', 'content-encoding': encoding },
    });
  const problemOf = (r: Raw) => {
    expect(r.headers['content-type']).toMatch(/^application\/problem\+json/);
    return JSON.parse(r.wire.toString());
  };

  it.each([
    ['gzip', gzipSync],
    ['deflate', deflateSync],
  ] as const)('takes a %s batch as if it came plain', async (encoding, pack) => {
    const order = await w.createOrder();
    const r = await post(pack(Buffer.from(JSON.stringify(batch(order.id, 20)))), encoding);
    expect(r.status, r.wire.toString()).toBe(200);
    expect(JSON.parse(r.wire.toString()).results.map((x: any) => x.status)).toEqual(Array(20).fill(201));
    const events = (await w.ops.get(`/v1/orders/${order.id}/events?limit=100`)).body.items as any[];
    expect(events.map((e) => e.data?.text).slice(1)).toEqual(Array.from({ length: 20 }, (_, i) => `zipped note ${i}`));
  });

  it('refuses a body in an encoding it does not know, 415, and writes nothing', async () => {
    const order = await w.createOrder();
    const before = await fingerprint(t.database.db);
    const r = await post(Buffer.from(JSON.stringify(batch(order.id, 1))), 'compress');
    expect(r.status).toBe(415);
    expect(problemOf(r)).toMatchObject({ status: 415, type: expect.stringMatching(/unsupported-content-encoding$/), detail: expect.stringMatching(/compress/) });
    expect(await fingerprint(t.database.db)).toBe(before);
  });

  it('refuses a body that does not inflate, 400, and writes nothing', async () => {
    const order = await w.createOrder();
    const before = await fingerprint(t.database.db);
    const packed = gzipSync(Buffer.from(JSON.stringify(batch(order.id, 5))));
    const r = await post(Buffer.concat([packed.subarray(0, 20), Buffer.from('not gzip at all'), packed.subarray(40)]), 'gzip');
    expect(r.status).toBe(400);
    expect(problemOf(r)).toMatchObject({ status: 400, type: expect.stringMatching(/malformed-compressed-body$/) });
    expect(await fingerprint(t.database.db)).toBe(before);
  });

  it('counts a compressed body against the limit as what it inflates to: a small bomb is 413', async () => {
    const order = await w.createOrder();
    const before = await fingerprint(t.database.db);
    // About 1 MB of JSON (the limit here is 64 KB) in about 1 KB of gzip.
    const big = Buffer.from(JSON.stringify({ events: [{ orderId: order.id, idempotencyKey: randomUUID(), type: 'note', text: ' '.repeat(1_000_000) }] }));
    const packed = gzipSync(big);
    expect(packed.length).toBeLessThan(65536 / 8);
    const r = await post(packed, 'gzip');
    expect(r.status).toBe(413);
    expect(problemOf(r)).toMatchObject({ status: 413, type: expect.stringMatching(/body-too-large$/) });
    expect(await fingerprint(t.database.db)).toBe(before);
  });
});
