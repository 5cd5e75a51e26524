// Faults under load, on a Postgres of the test's own that it stops and starts: the database going
// away for seconds, connections killed mid-transaction, an instance SIGTERMed and one SIGKILLed.
// Two real server processes, factory writers that retry with their Idempotency-Key on the other
// instance, and socket subscribers that resume with their cursor. After each fault: every
// acknowledged event is in Postgres exactly once, each order's seq is gapless, and every
// subscriber got every event exactly once, in seq order per order (invariants 1 to 4).
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../src/auth/jwt.js';
import { openDatabase } from '../src/db/database.js';
import { migrateToLatest } from '../src/db/migrator.js';
import { JWT_SECRET } from './helpers/app.js';
import { ApiClient } from './helpers/http.js';
import { IngestLoad, sleep, StreamFollower, until, type Attempt } from './helpers/ingest-load.js';
import { startServer, type ServerProcess } from './helpers/processes.js';
import { skipWithoutPostgresBinaries, startTempPostgres, type TempPostgres } from './helpers/temp-postgres.js';

// The pool's connection timeout is 3 s (src/db/database.ts): no request may wait much longer.
const OUTAGE_WAIT_BOUND_MS = 3000 + 2000;
const SHUTDOWN_GRACE_MS = 4000;
const FREEZE_MS = 5000;

let pgt: TempPostgres | undefined;
const servers: ServerProcess[] = [];
/** The instances clients may use now; a killed one is taken out, as a load balancer would. */
let live: ServerProcess[] = [];
let adminToken: string;
/** Admin calls go to the first live instance. */
const admin = () => new ApiClient(live[0]!.baseUrl).as(adminToken);
let ops: string;
let factory: { id: string; key: string };
let customerId: string;
const followers: StreamFollower[] = [];
const figures = { faults: 0, outageAttempts: 0, longestOutageWaitMs: 0, longestFrozenWaitMs: 0 };

const env = (name: string) => ({
  DATABASE_URL: `${pgt!.url}?application_name=orderstream-${name}`,
  RATE_LIMIT_PER_MINUTE: '1000000',
  SHUTDOWN_GRACE_MS: String(SHUTDOWN_GRACE_MS),
  LOG_LEVEL: 'warn',
});

async function startInstance(name: string): Promise<ServerProcess> {
  const s = await startServer(env(name));
  servers.push(s);
  live.push(s);
  return s;
}

/** A direct connection to the test's Postgres, for reading what was stored. */
async function query<T extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: pgt!.url });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

async function createOrders(n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await admin().post('/v1/orders', {
      customerId,
      product: 'fault test board',
      quantity: 1,
      promisedAt: new Date(Date.now() + 30 * 86400_000).toISOString(),
      route: [{ stage: 'review', factoryId: factory.id, plannedHours: 1 }],
    });
    expect(r.status, r.text).toBe(201);
    ids.push(r.body.id);
  }
  return ids;
}

function follower(on: () => ServerProcess[]): Promise<StreamFollower> {
  const f = new StreamFollower(() => on().map((s) => s.baseUrl), { token: ops }, 'all');
  followers.push(f);
  return f.start().then(() => f);
}

/**
 * The ledger after a fault: the writers' acknowledgements against Postgres, and every follower
 * against Postgres. Waits for the followers to catch up (bounded).
 */
async function checkLedger(load: IngestLoad, orderIds: string[], subscribers: StreamFollower[]) {
  expect(load.unexpected, load.unexpected.join('\n')).toEqual([]);
  const statuses = countStatuses(load.attempts);
  expect(Object.keys(statuses).filter((s) => /^5/.test(s) && s !== '503'), JSON.stringify(statuses)).toEqual([]);
  const rows = await query<{ id: string; order_id: string; seq: number; text: string | null; type: string }>(
    `select id, order_id, seq, type, data->>'text' as text from events where order_id = any($1) order by order_id, seq`,
    [orderIds],
  );
  // each order: seq 1..n without a gap, and the projection's last_seq is n (nothing half-written)
  const orders = await query<{ id: string; last_seq: number }>('select id, last_seq from orders where id = any($1)', [orderIds]);
  for (const o of orders) {
    const seqs = rows.filter((r) => r.order_id === o.id).map((r) => Number(r.seq));
    expect(seqs, `order ${o.id}`).toEqual(seqs.map((_, i) => i + 1));
    expect(Number(o.last_seq), `order ${o.id}`).toBe(seqs.length);
  }
  // each note once; each acknowledged one stored as acknowledged; nothing stored that was not sent
  const notes = rows.filter((r) => r.type === 'note');
  const byText = new Map<string, typeof notes>();
  for (const n of notes) byText.set(n.text!, [...(byText.get(n.text!) ?? []), n]);
  const twice = [...byText].filter(([, ns]) => ns.length > 1).map(([k]) => k);
  expect(twice, 'notes stored more than once').toEqual([]);
  for (const a of load.acked.values()) {
    const stored = byText.get(a.key)?.[0];
    expect(stored, `acknowledged ${a.key} missing`).toBeDefined();
    expect([stored!.id, Number(stored!.seq), stored!.order_id]).toEqual([a.eventId, a.seq, a.orderId]);
  }
  for (const text of byText.keys()) expect(load.tried.has(text), text).toBe(true);
  expect(load.acked.size).toBe(load.tried.size);

  // every subscriber: the events after the orders' creation, each once, in seq order per order
  const wanted = new Set(orderIds);
  const expected = rows.filter((r) => Number(r.seq) > 1).map((r) => r.id).sort();
  for (const f of subscribers) {
    // A subscription "from now" starts where the instance's tail is, which may be just before the
    // orders' `created` events: those may come or not; every later event must, once.
    const mine = () => f.events.filter((e) => wanted.has(e.orderId) && e.seq > 1);
    const all = f.events.filter((e) => wanted.has(e.orderId)).map((e) => e.id);
    expect(new Set(all).size, 'an event delivered twice').toBe(all.length);
    await until(() => mine().length >= expected.length, 20_000, `a subscriber to catch up (${mine().length} of ${expected.length})`);
    await sleep(300); // a duplicate would arrive now
    const got = mine();
    expect(got.map((e) => e.id).sort()).toEqual(expected);
    const last = new Map<string, number>();
    for (const e of got) {
      expect(e.seq, `order ${e.orderId}`).toBeGreaterThan(last.get(e.orderId) ?? 1);
      last.set(e.orderId, e.seq);
    }
  }
  return { events: expected.length, acked: load.acked.size, statuses };
}

function countStatuses(attempts: Attempt[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of attempts) out[String(a.status)] = (out[String(a.status)] ?? 0) + 1;
  return out;
}

const skip = skipWithoutPostgresBinaries();

describe.skipIf(skip)('faults under ingest load, on a Postgres of the test\'s own', () => {
  beforeAll(async () => {
    pgt = await startTempPostgres();
    const database = await openDatabase({ url: pgt.url, poolSize: 1 });
    await migrateToLatest(database.db);
    await database.close();
    await Promise.all([startInstance('a'), startInstance('b')]);
    adminToken = await mintToken(JWT_SECRET, { sub: 'fault-admin', role: 'admin' });
    ops = await mintToken(JWT_SECRET, { sub: 'fault-ops', role: 'ops' }, 3 * 3600);
    const c = await admin().post('/v1/customers', { name: 'Fault Robotics', country: 'DE' });
    expect(c.status, c.text).toBe(201);
    customerId = c.body.id;
    const f = await admin().post('/v1/factories', { name: 'Fault Fab', kind: 'fabrication', country: 'CN' });
    expect(f.status, f.text).toBe(201);
    const k = await admin().post(`/v1/factories/${f.body.id}/api-keys`, { label: 'mes' });
    expect(k.status, k.text).toBe(201);
    factory = { id: f.body.id, key: k.body.key };
  }, 120_000);

  afterAll(async () => {
    for (const f of followers) f.stop();
    await Promise.all(servers.map((s) => s.kill('SIGKILL')));
    await pgt?.remove();
    console.log(
      `faults injected and survived: ${figures.faults}; requests during outages: ${figures.outageAttempts}; ` +
        `longest wait of a request during an outage: ${figures.longestOutageWaitMs.toFixed(0)} ms (stopped), ` +
        `${figures.longestFrozenWaitMs.toFixed(0)} ms (frozen ${FREEZE_MS} ms)`,
    );
  }, 60_000);

  it('Postgres stopped (immediate) for 4 s under load: quick 503s with Retry-After, readyz 503, sockets stay, recovery by itself, nothing lost or doubled', async () => {
    const [A, B] = live as [ServerProcess, ServerProcess];
    const orderIds = await createOrders(12);
    const subscribers = [await follower(() => [A]), await follower(() => [B])];
    const load = new IngestLoad({ targets: () => live.map((s) => s.baseUrl), apiKey: factory.key, orderIds, writers: 8, prefix: `outage-${randomUUID().slice(0, 8)}` }).start();
    await until(() => load.acked.size >= 50, 15_000, 'load before the outage');

    const down = performance.now();
    await pgt!.stop('immediate');
    figures.faults++;
    // While it is down: readiness says so on both instances, and requests keep being answered.
    const ready: number[] = [];
    while (performance.now() - down < 4000) {
      await sleep(250);
      if (performance.now() - down > 500) {
        for (const s of [A, B]) {
          const t0 = performance.now();
          const r = await fetch(`${s.baseUrl}/readyz`, { signal: AbortSignal.timeout(10_000) });
          expect(performance.now() - t0).toBeLessThan(OUTAGE_WAIT_BOUND_MS);
          ready.push(r.status);
          expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
          expect(r.headers.get('retry-after')).toMatch(/^\d+$/);
        }
      }
    }
    const restarting = performance.now();
    await pgt!.start();
    const up = performance.now();
    expect(new Set(ready)).toEqual(new Set([503]));

    // Recovery by itself: a write sent after the restart is acknowledged within seconds, both ready again.
    await until(() => load.attempts.some((a) => a.start >= up && (a.status === 201 || a.status === 200)), 10_000, 'a write after the restart');
    for (const s of [A, B]) await until(async () => (await fetch(`${s.baseUrl}/readyz`)).status === 200, 10_000, 'readyz 200 after the restart');
    const recoveredAfter = Math.min(...load.attempts.filter((a) => a.start >= up && (a.status === 201 || a.status === 200)).map((a) => a.end)) - up;
    await sleep(1500);
    await load.stop();

    // During the outage every request was answered: 503 problem+json with Retry-After, quickly.
    const during = load.between(down, restarting);
    const outcomes = countStatuses(during);
    // every request in flight at some moment of the outage, including those sent just before it
    const longest = Math.max(...load.overlapping(down, restarting).map((a) => a.end - a.start));
    figures.outageAttempts += during.length;
    figures.longestOutageWaitMs = Math.max(figures.longestOutageWaitMs, longest);
    console.log(`outage: ${during.length} requests while down, ${JSON.stringify(outcomes)}, longest wait ${longest.toFixed(0)} ms; first write acknowledged ${recoveredAfter.toFixed(0)} ms after the restart`);
    expect(outcomes['503'] ?? 0, JSON.stringify(outcomes)).toBeGreaterThan(10);
    expect(during.filter((a) => a.status === 503 && !a.wellFormed503)).toEqual([]);
    expect(during.filter((a) => a.status === 'network')).toEqual([]);
    expect(longest).toBeLessThan(OUTAGE_WAIT_BOUND_MS);
    // The sockets stayed connected through it.
    for (const f of subscribers) expect(f.disconnects).toEqual([]);

    const ledger = await checkLedger(load, orderIds, subscribers);
    console.log(`outage ledger: ${JSON.stringify(ledger)}`);
  }, 90_000);

  it('Postgres frozen (SIGSTOP) for 5 s under load, connections open but silent: readyz 503 within its 2 s, requests bounded, nothing lost or doubled', async () => {
    const [A, B] = live as [ServerProcess, ServerProcess];
    const orderIds = await createOrders(8);
    const subscribers = [await follower(() => [A]), await follower(() => [B])];
    const load = new IngestLoad({ targets: () => live.map((s) => s.baseUrl), apiKey: factory.key, orderIds, writers: 6, prefix: `freeze-${randomUUID().slice(0, 8)}` }).start();
    await until(() => load.acked.size >= 30, 15_000, 'load before the freeze');
    const frozen = performance.now();
    pgt!.freeze();
    figures.faults++;
    const probes: Array<{ status: number; ms: number }> = [];
    try {
      while (performance.now() - frozen < FREEZE_MS) {
        await Promise.all(
          [A, B].map(async (s) => {
            const t0 = performance.now();
            const r = await fetch(`${s.baseUrl}/readyz`, { signal: AbortSignal.timeout(10_000) });
            probes.push({ status: r.status, ms: performance.now() - t0 });
          }),
        );
        await sleep(500);
      }
    } finally {
      pgt!.thaw();
    }
    const thawed = performance.now();
    await until(() => load.attempts.some((a) => a.start >= thawed && (a.status === 201 || a.status === 200)), 10_000, 'a write after the thaw');
    for (const s of [A, B]) await until(async () => (await fetch(`${s.baseUrl}/readyz`)).status === 200, 10_000, 'readyz 200 after the thaw');
    await sleep(1000);
    await load.stop();

    expect(probes.length).toBeGreaterThanOrEqual(4);
    for (const p of probes) {
      expect(p.status).toBe(503);
      expect(p.ms).toBeLessThan(2000 + 1000);
    }
    const during = load.overlapping(frozen, thawed);
    const longest = Math.max(...during.map((a) => a.end - a.start));
    figures.longestFrozenWaitMs = Math.max(figures.longestFrozenWaitMs, longest);
    console.log(`freeze: ${during.length} requests in flight while frozen, ${JSON.stringify(countStatuses(during))}, longest wait ${longest.toFixed(0)} ms; readyz answered 503 in at most ${Math.max(...probes.map((p) => p.ms)).toFixed(0)} ms`);
    // A request already in a query waits for the database to come back; none waits longer.
    expect(longest).toBeLessThan(FREEZE_MS + 3000);
    for (const f of subscribers) expect(f.disconnects).toEqual([]);
    const ledger = await checkLedger(load, orderIds, subscribers);
    console.log(`freeze ledger: ${JSON.stringify(ledger)}`);
  }, 90_000);

  it('connections killed mid-transaction (pg_terminate_backend): each request fails cleanly or is retried, nothing partial', async () => {
    const orderIds = await createOrders(8);
    const subscribers = [await follower(() => [live[0]!])];
    const load = new IngestLoad({ targets: () => live.map((s) => s.baseUrl), apiKey: factory.key, orderIds, writers: 10, prefix: `kill-${randomUUID().slice(0, 8)}` }).start();
    await until(() => load.acked.size >= 20, 15_000, 'load before the kills');
    let killed = 0;
    let withXid = 0;
    const end = Date.now() + 12_000;
    while ((killed < 8 || withXid < 3) && Date.now() < end) {
      // a pool backend of either instance inside a transaction (not the LISTEN connection, which is idle)
      const rows = await query<{ pid: number; xid: string | null }>(
        `select pid, backend_xid::text as xid from pg_stat_activity
          where application_name like 'orderstream-%' and xact_start is not null and pid <> pg_backend_pid()
            and query not ilike 'listen%' order by backend_xid is null limit 1`,
      );
      if (rows[0]) {
        const [r] = await query<{ ok: boolean }>('select pg_terminate_backend($1) as ok', [rows[0].pid]);
        if (r?.ok) {
          killed++;
          if (rows[0].xid) withXid++;
        }
      }
      await sleep(40);
    }
    figures.faults += killed;
    await sleep(1000);
    await load.stop();
    const ledger = await checkLedger(load, orderIds, subscribers);
    console.log(`killed ${killed} backends in a transaction (${withXid} after their first write): ${JSON.stringify(ledger)}`);
    expect(killed).toBeGreaterThanOrEqual(8);
    expect(withXid).toBeGreaterThanOrEqual(1);
    // A killed transaction is answered 503 (or its request lands again and counts once); never a 500.
    // Whether a kill reaches a request still waiting for its answer is timing: a 503 is not required.
    expect(Object.keys(ledger.statuses).filter((k) => !['200', '201', '503'].includes(k))).toEqual([]);
    for (const s of servers.filter((x) => live.includes(x))) expect((await fetch(`${s.baseUrl}/readyz`)).status).toBe(200);
  }, 60_000);

  it('SIGTERM of an instance under load: its sockets are told why, it exits 0 in bounded time, clients go on elsewhere without loss', async () => {
    const [A] = live as [ServerProcess, ServerProcess];
    const orderIds = await createOrders(8);
    const onA = await follower(() => (live.includes(A) ? [A, ...live.filter((s) => s !== A)] : live));
    const load = new IngestLoad({ targets: () => live.map((s) => s.baseUrl), apiKey: factory.key, orderIds, writers: 8, prefix: `term-${randomUUID().slice(0, 8)}` }).start();
    await until(() => load.acked.size >= 40, 15_000, 'load before SIGTERM');
    const t0 = performance.now();
    A.child.kill('SIGTERM');
    const code = await A.exited;
    const exitMs = performance.now() - t0;
    live = live.filter((s) => s !== A);
    figures.faults++;
    expect(code, A.output().slice(-2000)).toBe(0);
    expect(exitMs).toBeLessThan(SHUTDOWN_GRACE_MS + 3000);
    expect(onA.closing).toContain('server shutting down');
    await sleep(1500);
    await load.stop();
    const ledger = await checkLedger(load, orderIds, [onA]);
    console.log(`SIGTERM: exited 0 after ${exitMs.toFixed(0)} ms; ${JSON.stringify(ledger)}`);
    await startInstance('a2');
  }, 90_000);

  it('SIGKILL of an instance under load: retries with the same keys on the other instance, subscribers resume: each event once', async () => {
    const [X, Y] = live as [ServerProcess, ServerProcess];
    const orderIds = await createOrders(8);
    // one subscriber on the instance to be killed, one on the survivor
    const onX = await follower(() => (live.includes(X) ? [X, Y] : [Y]));
    const onY = await follower(() => [Y]);
    const load = new IngestLoad({ targets: () => live.map((s) => s.baseUrl), apiKey: factory.key, orderIds, writers: 8, prefix: `kill9-${randomUUID().slice(0, 8)}` }).start();
    await until(() => load.acked.size >= 40, 15_000, 'load before SIGKILL');
    await X.kill('SIGKILL');
    live = live.filter((s) => s !== X);
    figures.faults++;
    await sleep(2000);
    await load.stop();
    const ledger = await checkLedger(load, orderIds, [onX, onY]);
    expect(onX.disconnects.length).toBeGreaterThanOrEqual(1);
    console.log(`SIGKILL: ${JSON.stringify(ledger)}; the subscriber of the killed instance reconnected ${onX.disconnects.length} time(s)`);
  }, 90_000);
});
