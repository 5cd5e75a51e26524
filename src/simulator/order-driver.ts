import { setTimeout as delay } from 'node:timers/promises';
import type { Random } from '../world/random.js';
import { problemDetail, problemType, type ApiClient, type ApiReply, type Credentials } from './api-client.js';
import { sendMaybeTwice, type Created } from './duplicate-requests.js';
import type { Network } from './network-setup.js';
import type { IncidentRates } from './options.js';
import { SHIPPING, type OrderPlan, type PlannedStep } from './order-plan.js';
import { alreadyApplied, WORK_EVENTS, type OrderView } from './order-view.js';
import type { StatsRecorder } from './stats.js';

export interface DriverContext {
  api: ApiClient;
  stats: StatsRecorder;
  network: Network;
  /** Ops events, order creation and read-backs (an admin token is ops and more). */
  ops: Credentials;
  rates: IncidentRates;
  /** Unique per run: idempotency keys stay remembered for days, and a new run must not replay an old one. */
  runTag: string;
  signal: AbortSignal;
}

export type DriveOutcome = 'delivered' | 'abandoned' | 'stopped';

/** A refusal the simulator cannot reconcile: the order is left where it is. */
class Abandon extends Error {}

type Body = Record<string, unknown>;
type Poster = 'ops' | PlannedStep;

const CARRIERS = ['DHL Express', 'FedEx International Priority', 'UPS Worldwide Saver', 'SF Express'];

/**
 * Drives one order as its factories would: each step, once the steps it waits for are done, is
 * reported by the factory that owns it (with that factory's key), with ops stepping in for holds
 * and re-routes. Posts for one order go one at a time, so a hold is never overtaken by work from
 * a parallel branch; different orders run side by side.
 */
export class OrderDriver {
  private orderId = '';
  private keySeq = 0;
  private lock: Promise<unknown> = Promise.resolve();
  private held = false;
  private resumed: Promise<void> = Promise.resolve();
  private readonly stop = new AbortController();
  private readonly signal: AbortSignal;

  constructor(
    private readonly ctx: DriverContext,
    private readonly plan: OrderPlan,
    private readonly rng: Random,
  ) {
    this.signal = AbortSignal.any([ctx.signal, this.stop.signal]);
  }

  async run(): Promise<DriveOutcome> {
    try {
      await this.create();
      await this.walk();
      return 'delivered';
    } catch (err) {
      if (this.ctx.signal.aborted) return 'stopped';
      this.ctx.stats.problem(`order #${this.plan.index} ${this.orderId}: ${err instanceof Error ? err.message : String(err)}`);
      return 'abandoned';
    } finally {
      this.stop.abort(); // parallel branches still waiting stop here
    }
  }

  private async create() {
    const p = this.plan;
    const body = {
      customerId: p.customerId,
      ...(p.engineerId ? { engineerId: p.engineerId } : {}),
      externalRef: `SIM-${this.ctx.runTag}-${p.index + 1}`,
      product: p.product,
      quantity: p.quantity,
      promisedAt: new Date(Date.now() + p.promisedInMs).toISOString(),
      route: p.steps.map((s) => ({ stage: s.stage, factoryId: s.factoryId, plannedHours: s.plannedHours, after: s.after })),
    };
    const key = `sim-${this.ctx.runTag}-order-${p.index}`;
    const reply = await sendMaybeTwice(
      () => this.ctx.api.request<Created>('POST', '/v1/orders', { credentials: this.ctx.ops, body, idempotencyKey: key }),
      {
        rng: this.rng,
        retry: this.ctx.rates.retry,
        concurrent: this.ctx.rates.concurrentDuplicate,
        stats: this.ctx.stats,
        what: 'create order',
      },
    );
    if (reply.status !== 201 && reply.status !== 200)
      throw new Abandon(`create answered ${reply.status}: ${problemDetail(reply.body)}`);
    this.orderId = reply.body.id;
    this.ctx.stats.orders.created++;
    if (p.slipped) this.ctx.stats.incidents.slipped++;
  }

  /** Starts every step whose predecessors are done, until all are. */
  private async walk() {
    const done = new Set<string>();
    const started = new Set<string>();
    const running = new Set<Promise<void>>();
    while (done.size < this.plan.steps.length) {
      for (const step of this.plan.steps) {
        if (started.has(step.stage) || !step.after.every((d) => done.has(d))) continue;
        started.add(step.stage);
        const p: Promise<void> = this.runStep(step).then(() => {
          done.add(step.stage);
          running.delete(p);
        });
        p.catch(() => undefined); // the race below reports it; this only marks it handled
        running.add(p);
      }
      if (!running.size) throw new Abandon('the route cannot proceed');
      await Promise.race(running);
    }
  }

  private async runStep(step: PlannedStep) {
    const { plan } = this;
    if (plan.reroute?.stage === step.stage) await this.reroute(step, plan.reroute.toFactoryId);
    if (step.stage === SHIPPING) return this.ship(step);

    let scrap = 0;
    let pausedMs = 0;
    const actions: Array<{ at: number; run: () => Promise<void> }> = step.progress.map((progress) => ({
      at: progress / 100,
      run: () => this.post(step, () => ({ type: 'stage_progress', stage: step.stage, progress })),
    }));
    const { hold, quality } = plan;
    if (hold?.stage === step.stage)
      actions.push({ at: hold.atFraction, run: async () => void (pausedMs += await this.hold(hold)) });
    if (quality?.stage === step.stage) {
      actions.push({
        at: quality.atFraction,
        run: async () => {
          await this.post(step, () => ({
            type: 'quality_issue',
            stage: step.stage,
            severity: quality.severity,
            description: `${quality.scrap} of ${plan.quantity} boards failed inspection at ${step.stage}`,
            quantityScrap: quality.scrap,
          }));
          scrap = quality.scrap;
          this.ctx.stats.incidents.qualityIssues++;
          this.ctx.stats.incidents.scrap += quality.scrap;
        },
      });
    }
    actions.sort((a, b) => a.at - b.at);

    if (!step.completionOnly) await this.post(step, () => ({ type: 'stage_started', stage: step.stage }));
    const t0 = Date.now();
    for (const a of actions) {
      await this.sleep(t0 + pausedMs + a.at * step.workMs - Date.now());
      await a.run();
    }
    await this.sleep(t0 + pausedMs + step.workMs - Date.now());
    await this.post(step, () => ({
      type: 'stage_completed',
      stage: step.stage,
      quantityGood: Math.max(0, plan.quantity - scrap),
      ...(scrap ? { quantityScrap: scrap } : {}),
    }));
  }

  private async ship(step: PlannedStep) {
    const tracking = `SIM${this.ctx.runTag.toUpperCase()}${String(this.plan.index + 1).padStart(6, '0')}`;
    const carrier = this.rng.pick(CARRIERS);
    await this.post(step, () => ({ type: 'shipped', trackingNumber: tracking, carrier }));
    await this.sleep(step.workMs);
    await this.post(step, () => ({ type: 'delivered' }));
  }

  private async reroute(step: PlannedStep, to: string) {
    await this.post('ops', () => ({
      type: 'rerouted',
      stage: step.stage,
      factoryId: to,
      reason: 'capacity: moved to a sister factory',
    }));
    step.factoryId = to;
    this.ctx.stats.incidents.reroutes++;
  }

  /** Holds the order, waits, resumes; returns how long the work stood still. */
  private async hold(h: NonNullable<OrderPlan['hold']>): Promise<number> {
    const t0 = Date.now();
    // Set before queueing for the lock: from here on, no work post of another branch goes out.
    this.held = true;
    let release!: () => void;
    this.resumed = new Promise((r) => (release = r));
    try {
      const reason =
        h.cause === 'engineering_query'
          ? 'EQ: drill file and outline disagree; asked the customer'
          : 'laminate out of stock; waiting for delivery';
      await this.post('ops', () => ({ type: 'hold', cause: h.cause, reason }), { duringHold: true });
      this.ctx.stats.incidents.holds++;
      await this.sleep(h.ms);
      await this.post(
        'ops',
        () => ({ type: 'resumed', reason: h.cause === 'engineering_query' ? 'customer answered the EQ' : 'material arrived' }),
        { duringHold: true },
      );
    } finally {
      this.held = false;
      release();
    }
    return Date.now() - t0;
  }

  private credentials(poster: Poster): Credentials {
    if (poster === 'ops') return this.ctx.ops;
    const key = this.ctx.network.keys.get(poster.factoryId);
    if (!key) throw new Abandon(`no API key for factory ${poster.factoryId} (stage ${poster.stage})`);
    return { apiKey: key.key };
  }

  /**
   * Posts one event with its own Idempotency-Key, kept across every retry: the HTTP client's
   * (429, 503, network) and ours after a refusal (which gives the key back to its caller).
   */
  private async post(poster: Poster, makeBody: () => Body, o: { duringHold?: boolean } = {}) {
    const key = `sim-${this.ctx.runTag}-o${this.plan.index}-${++this.keySeq}`;
    for (let attempt = 1; ; attempt++) {
      while (this.held && !o.duringHold) await this.until(this.resumed);
      let body: Body = {};
      const reply = await this.exclusive(async () => {
        if (this.held && !o.duringHold) return undefined;
        // Stamped once the order's turn comes, so occurredAt follows the order's seq.
        body = { ...makeBody(), occurredAt: new Date().toISOString() };
        const credentials = this.credentials(poster);
        return sendMaybeTwice(
          () =>
            this.ctx.api.request<Created>('POST', `/v1/orders/${this.orderId}/events`, {
              credentials,
              body,
              idempotencyKey: key,
            }),
          {
            rng: this.rng,
            retry: this.ctx.rates.retry,
            concurrent: this.ctx.rates.concurrentDuplicate,
            stats: this.ctx.stats,
            what: `${body.type}`,
          },
        );
      });
      if (!reply) continue; // a hold came first: wait for the resume
      if (reply.status === 200 || reply.status === 201) return;
      await this.afterRefusal(reply, poster, body, attempt);
    }
  }

  /** Decides what a refusal means; returns to retry, throws to give the order up. */
  private async afterRefusal(reply: ApiReply, poster: Poster, body: Body, attempt: number) {
    const what = `${body.type}${body.stage ? ` ${body.stage}` : ''}`;
    const detail = `${what} answered ${reply.status} ${problemType(reply.body)}: ${problemDetail(reply.body)}`;
    if (reply.status === 409) {
      this.ctx.stats.conflict(problemType(reply.body));
      const order = await this.read();
      if (alreadyApplied(order, body)) return; // the effect is there: a retry whose first try landed
      if (order.status === 'delivered' || order.status === 'cancelled')
        throw new Abandon(`${detail} (the order is ${order.status})`);
      if (order.status === 'on_hold' && WORK_EVENTS.has(String(body.type))) {
        // Someone else (ops on the board) holds it: wait as a factory would, then try again.
        await this.sleep(2_000);
        return;
      }
      this.ctx.stats.problem(detail);
      if (attempt < 3) return void (await this.sleep(250 * attempt));
      throw new Abandon(detail);
    }
    if (reply.status === 403 && poster !== 'ops') {
      // The step may have been moved to another factory behind our back: follow it.
      const order = await this.read();
      const now = order.route.find((s) => s.stage === poster.stage)?.factoryId;
      if (now && now !== poster.factoryId && this.ctx.network.keys.has(now) && attempt < 3) {
        poster.factoryId = now;
        return;
      }
    }
    if (reply.status >= 500 && attempt < 2) {
      this.ctx.stats.problem(detail);
      return void (await this.sleep(500));
    }
    throw new Abandon(detail);
  }

  private async read(): Promise<OrderView> {
    const r = await this.ctx.api.request<OrderView>('GET', `/v1/orders/${this.orderId}`, { credentials: this.ctx.ops });
    if (r.status !== 200) throw new Abandon(`reading the order back answered ${r.status}: ${problemDetail(r.body)}`);
    return r.body;
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => undefined);
    return run;
  }

  private sleep(ms: number): Promise<void> {
    return delay(Math.max(0, ms), undefined, { signal: this.signal });
  }

  /** Waits for p, or rejects when the order's driving stops. */
  private until(p: Promise<void>): Promise<void> {
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(this.signal.reason);
      if (this.signal.aborted) return onAbort();
      this.signal.addEventListener('abort', onAbort, { once: true });
      void p.then(() => {
        this.signal.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }
}
