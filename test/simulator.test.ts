import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient as SimulatorClient } from '../src/simulator/api-client.js';
import type { Network } from '../src/simulator/network-setup.js';
import { DEFAULT_RATES } from '../src/simulator/options.js';
import { criticalPathHours, planOrder } from '../src/simulator/order-plan.js';
import { runSimulation, type SimulationStats } from '../src/simulator/run-simulation.js';
import { StatsRecorder } from '../src/simulator/stats.js';
import { STAGES } from '../src/world/catalogue.js';
import { Random } from '../src/world/random.js';
import { startTestApp, type TestApp } from './helpers/app.js';

describe('simulator against the service', () => {
  let t: TestApp;
  let stats: SimulationStats;
  const snapshots: SimulationStats[] = [];
  let admin: ReturnType<TestApp['api']['as']>;

  beforeAll(async () => {
    t = await startTestApp();
    admin = t.api.as(await t.token({ role: 'admin' }));
    stats = await runSimulation({
      baseUrl: t.baseUrl,
      adminToken: await t.token({ role: 'admin', sub: 'simulator' }),
      orders: 5,
      concurrency: 5,
      speed: 72_000, // 20 planned hours a second: a route in a few seconds
      seed: 11,
      arrivalMs: 50,
      promiseBufferMs: 500,
      // Every order meets a hold, a quality issue and a re-route; many requests are repeated.
      rates: { hold: 1, quality: 1, reroute: 1, slip: 0, retry: 0.3, concurrentDuplicate: 0.15 },
      statsIntervalMs: 100,
      onStats: (s) => snapshots.push(s),
      signal: AbortSignal.timeout(45_000),
    });
  }, 60_000);
  afterAll(async () => t?.close());

  it('delivers every order, with replays answered 200 and no error at all', () => {
    expect(stats.lastErrors).toEqual([]);
    expect(stats.orders).toMatchObject({ planned: 5, created: 5, active: 0, delivered: 5, abandoned: 0, stopped: 0 });
    expect(stats.replays).toBeGreaterThan(0);
    expect(stats.duplicatesAccepted).toBe(0);
    expect(stats.errors).toEqual({});
    expect(Object.keys(stats.statuses).every((s) => Number(s) < 500)).toBe(true);
    expect(stats.incidents).toMatchObject({ holds: 5, qualityIssues: 5, reroutes: 5 });
    expect(snapshots.some((s) => s.orders.active > 0 && s.events > 0)).toBe(true);
  });

  it('leaves each order a gapless log with one event per fact, posted by the owning factory', async () => {
    const orders = (await admin.get('/v1/orders?limit=50')).body.items as any[];
    expect(orders).toHaveLength(5);
    let events = 0;
    for (const order of orders) {
      expect(order.status).toBe('delivered');
      const items = (await admin.get(`/v1/orders/${order.id}/events?limit=1000`)).body.items as any[];
      expect(items.map((e) => e.seq)).toEqual(items.map((_, i) => i + 1));
      const of = (type: string) => items.filter((e) => e.type === type);
      const posted = items.filter((e) => !e.type.startsWith('became_')).map((e) => e.occurredAt);
      expect(posted).toEqual([...posted].sort());
      events += items.filter((e) => !e.type.startsWith('became_')).length;

      // One completion per stage, whatever was retried or duplicated.
      const stages = order.route.map((s: any) => s.stage).filter((s: string) => s !== 'shipping');
      expect(
        of('stage_completed')
          .map((e) => e.stage)
          .sort(),
      ).toEqual([...stages].sort());
      expect([of('shipped').length, of('delivered').length, of('hold').length, of('resumed').length]).toEqual([1, 1, 1, 1]);
      expect(of('hold')[0].seq).toBeLessThan(of('resumed')[0].seq);
      expect(['engineering_query', 'material']).toContain(of('hold')[0].data.cause);
      expect(of('quality_issue')).toHaveLength(1);
      expect(of('quality_issue')[0].data.quantityScrap).toBeGreaterThan(0);

      // Nothing but the hold's own resume happens while the order is on hold.
      const held = items.filter((e) => e.seq > of('hold')[0].seq && e.seq < of('resumed')[0].seq);
      expect(held.filter((e) => ['stage_started', 'stage_progress', 'stage_completed'].includes(e.type))).toEqual([]);

      // The re-routed step is reported by its new factory, with that factory's key.
      const [rerouted] = of('rerouted');
      expect(rerouted.data.fromFactoryId).not.toBe(rerouted.factoryId);
      const step = order.route.find((s: any) => s.stage === rerouted.stage);
      expect(step.factoryId).toBe(rerouted.factoryId);
      for (const e of items.filter((x) => x.stage === rerouted.stage && x.seq > rerouted.seq)) {
        expect(e.factoryId).toBe(rerouted.factoryId);
      }
      for (const e of [...of('stage_started'), ...of('stage_completed'), ...of('shipped'), ...of('delivered')]) {
        expect(e.actor).toBe(`factory:${order.route.find((s: any) => s.stage === e.stage).factoryId}`);
      }
    }
    // Every 201 the simulator saw is one event in the logs, and no more.
    expect(events).toBe(stats.events);
  });

  it("revokes the run's keys at the end", async () => {
    const factories = (await admin.get('/v1/factories?limit=200')).body.items as any[];
    const keys = (
      await Promise.all(factories.map(async (f) => (await admin.get(`/v1/factories/${f.id}/api-keys`)).body.items as any[]))
    ).flat();
    expect(keys.length).toBe(15);
    expect(keys.every((k) => k.label.startsWith('simulator ') && k.revokedAt)).toBe(true);
  });
});

describe('order plans', () => {
  const network: Network = {
    customers: [{ id: '00000000-0000-4000-8000-000000000001', engineers: [] }],
    factories: {
      fabrication: ['f1', 'f2'],
      assembly: ['a1', 'a2'],
      components: ['c1'],
      testing: ['t1', 't2'],
      logistics: ['l1', 'l2'],
    },
    keys: new Map(),
  };
  const settings = {
    speed: 3600,
    rates: DEFAULT_RATES,
    templates: ['pcb-2layer', 'pcb-4layer', 'pcba'],
    promiseBufferMs: 60_000,
  };

  it('are drawn from the seed alone, along the catalogue, with a promise beyond the critical path', () => {
    for (let i = 0; i < 50; i++) {
      const plan = planOrder(new Random(i), i, network, settings);
      expect(planOrder(new Random(i), i, network, settings)).toEqual(plan);
      const seen = new Set<string>();
      for (const step of plan.steps) {
        expect(step.after.every((d) => seen.has(d))).toBe(true);
        seen.add(step.stage);
        expect(network.factories[STAGES[step.stage]!.kind]).toContain(step.factoryId);
        // Compressed like the work: a catalogue median of 2 h is planned as 2 s at ×3600.
        const medians = step.stage === 'components' ? [1, 24] : [STAGES[step.stage]!.medianHours]; // in stock, or sourced
        expect(medians.some((h) => Math.abs(step.plannedHours * 3600 - h) < 1e-3)).toBe(true);
        if (!step.slipped) expect(step.workMs).toBeLessThanOrEqual(STAGES[step.stage]!.p90Hours * 1000 + 1e-6);
      }
      expect(plan.promisedInMs).toBeGreaterThan(criticalPathHours(plan.steps) * 3_600_000 * 1.15);
      if (plan.reroute) {
        const step = plan.steps.find((s) => s.stage === plan.reroute!.stage)!;
        expect(plan.reroute.toFactoryId).not.toBe(step.factoryId);
        expect(network.factories[step.kind]).toContain(plan.reroute.toFactoryId);
      }
    }
  });

  it('make a slipped order overrun its promise', () => {
    const all = { ...DEFAULT_RATES, slip: 1, hold: 0 };
    for (let i = 0; i < 20; i++) {
      const plan = planOrder(new Random(i), i, network, { ...settings, rates: all });
      expect(plan.slipped).toBe(true);
      const ends = new Map<string, number>();
      for (const s of plan.steps) ends.set(s.stage, Math.max(0, ...s.after.map((d) => ends.get(d)!)) + s.workMs);
      expect(Math.max(...ends.values())).toBeGreaterThan(plan.promisedInMs);
    }
  });
});

describe('simulator HTTP client', () => {
  it('retries 429 and 503 with the same body and Idempotency-Key, honouring Retry-After', async () => {
    const seen: Array<{ key: string | undefined; body: string; at: number }> = [];
    const replies = [
      { status: 429, headers: { 'retry-after': '1' } },
      { status: 503, headers: { 'retry-after': '0' } },
      { status: 201, headers: {} },
    ];
    const server = createServer(async (req: IncomingMessage, res) => {
      let body = '';
      for await (const chunk of req) body += chunk;
      seen.push({ key: req.headers['idempotency-key'] as string | undefined, body, at: Date.now() });
      const r = replies[seen.length - 1]!;
      res.writeHead(r.status, { 'content-type': 'application/json', ...r.headers }).end(JSON.stringify({ id: 'e1' }));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const stats = new StatsRecorder(1);
      const client = new SimulatorClient(
        `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        stats,
        new AbortController().signal,
      );
      const reply = await client.request('POST', '/v1/orders/x/events', {
        credentials: { apiKey: 'k' },
        body: { type: 'delivered' },
        idempotencyKey: 'key-1',
      });
      expect(reply.status).toBe(201);
      expect(seen.map((s) => s.key)).toEqual(['key-1', 'key-1', 'key-1']);
      expect(new Set(seen.map((s) => s.body)).size).toBe(1);
      expect(seen[1]!.at - seen[0]!.at).toBeGreaterThanOrEqual(950);
      const s = stats.snapshot();
      expect(s.retries).toBe(2);
      expect(s.errors).toEqual({ '429': 1, '503': 1 });
    } finally {
      server.close();
    }
  });
});
