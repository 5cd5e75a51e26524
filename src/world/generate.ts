// The codes only: the package's main entry also loads the names in 79 languages (1 MB).
import countries from 'i18n-iso-countries/index.js';
import type { Kysely } from 'kysely';
import type { Database } from '../db/database.js';
import type { DB } from '../db/schema.js';
import { derivedColumns } from '../orders/repository.js';
import { PRODUCTS, type FactoryKind } from './catalogue.js';
import { Random } from './random.js';
import { simulateOrder } from './simulate-order.js';
import { rebuildRollups } from '../ops/rollups.js';
import { copyWriter, insertWriter, type Row, type WorldWriter } from './writers.js';

export interface WorldSize {
  customers: number;
  engineersPerCustomer: number;
  factories: number;
  orders: number;
}

/** Named sizes; `full` is the network of ../shared/DESIGN.md. */
export const WORLD_SIZES: Record<string, WorldSize> = {
  tiny: { customers: 20, engineersPerCustomer: 3, factories: 15, orders: 200 },
  small: { customers: 500, engineersPerCustomer: 5, factories: 100, orders: 10_000 },
  medium: { customers: 10_000, engineersPerCustomer: 10, factories: 5_000, orders: 200_000 },
  full: { customers: 100_000, engineersPerCustomer: 10, factories: 100_000, orders: 2_000_000 },
};

export interface WorldOptions extends WorldSize {
  seed: number;
  now?: Date;
  /** Orders are created over this many days before now. */
  days?: number;
  onProgress?: (phase: string, done: number, total: number) => void;
}

export interface WorldSummary {
  customers: number;
  engineers: number;
  factories: number;
  orders: number;
  events: number;
  steps: number;
  ms: number;
}

const KINDS: ReadonlyArray<readonly [FactoryKind, number]> = [
  ['fabrication', 30],
  ['assembly', 25],
  ['components', 25],
  ['testing', 10],
  ['logistics', 10],
];
const FACTORY_COUNTRIES = [
  ['CN', 85],
  ['VN', 4],
  ['TW', 3],
  ['MY', 2],
  ['TH', 2],
  ['DE', 2],
  ['US', 2],
] as const;
const TIMEZONES: Record<string, string> = {
  CN: 'Asia/Shanghai',
  VN: 'Asia/Ho_Chi_Minh',
  TW: 'Asia/Taipei',
  MY: 'Asia/Kuala_Lumpur',
  TH: 'Asia/Bangkok',
  DE: 'Europe/Berlin',
  US: 'America/Los_Angeles',
};
const BIG_MARKETS: Record<string, number> = {
  CN: 200,
  US: 150,
  DE: 80,
  IN: 60,
  JP: 50,
  GB: 50,
  KR: 40,
  FR: 30,
  CA: 30,
  BR: 25,
  AU: 20,
  IT: 20,
  NL: 15,
};

/**
 * Builds a realistic network and loads it, a chunk of orders per transaction: customers across
 * 210+ countries, their engineers, factories of every kind, and orders at every point of their
 * routes with their events and projections. Into a real Postgres (a Database with a pool) it
 * loads with COPY; into a Kysely handle (the embedded database) with multi-row inserts.
 */
export async function generateWorld(target: Kysely<DB> | Database, o: WorldOptions): Promise<WorldSummary> {
  const started = Date.now();
  const db = 'kind' in target ? target.db : target;
  const writer: WorldWriter = 'kind' in target && target.pool ? await copyWriter(target.pool) : insertWriter(db);
  const rng = new Random(o.seed);
  const now = o.now ?? new Date();
  const days = o.days ?? 45;
  const progress = o.onProgress ?? (() => undefined);
  const countryWeights = Object.keys(countries.getAlpha2Codes()).map((c) => [c, BIG_MARKETS[c] ?? 1] as const);

  // Customers and their engineers.
  const customers: Array<{ id: string; country: string; engineers: string[] }> = [];
  for (let i = 0; i < o.customers; i++) {
    customers.push({ id: rng.uuid(), country: rng.weighted(countryWeights), engineers: [] });
  }
  await writer.write([
    {
      table: 'customers',
      rows: customers.map((c, i) => ({ id: c.id, name: `Customer ${c.country}-${i}-${c.id.slice(0, 6)}`, country: c.country })),
    },
  ]);
  progress('customers', o.customers, o.customers);
  let engineers = 0;
  const engineerRows: Row[] = [];
  const flush = async () => {
    await writer.write([{ table: 'engineers', rows: engineerRows.splice(0) }]);
  };
  for (const c of customers) {
    for (let e = 0; e < o.engineersPerCustomer; e++) {
      const id = rng.uuid();
      c.engineers.push(id);
      engineerRows.push({
        id,
        customer_id: c.id,
        name: `Engineer ${engineers}`,
        email: `eng${engineers}@c${c.id.slice(0, 8)}.example`,
      });
      engineers++;
    }
    if (engineerRows.length >= 50_000) {
      await flush();
      progress('engineers', engineers, o.customers * o.engineersPerCustomer);
    }
  }
  await flush();
  progress('engineers', engineers, engineers);

  // Factories, pooled by kind for routing.
  const pools: Record<FactoryKind, string[]> = { fabrication: [], assembly: [], components: [], testing: [], logistics: [] };
  const factoryRows = Array.from({ length: o.factories }, (_, i) => {
    const kind = i < KINDS.length ? KINDS[i]![0] : rng.weighted(KINDS);
    const country = rng.weighted(FACTORY_COUNTRIES);
    const id = rng.uuid();
    pools[kind].push(id);
    return { id, name: `${country} ${kind} works ${i}`, kind, country, timezone: TIMEZONES[country] ?? 'UTC' };
  });
  await writer.write([{ table: 'factories', rows: factoryRows }]);
  progress('factories', o.factories, o.factories);

  // Orders, a chunk per transaction.
  const templates = [
    ['pcb-2layer', 45],
    ['pcb-4layer', 30],
    ['pcba', 25],
  ] as const;
  let events = 0;
  let steps = 0;
  // Small chunks, one written while the next is generated: the database and this process work
  // at the same time (a chunk's COPY data leaves the socket only while this process waits).
  const CHUNK = 250;
  let writing: Promise<void> = Promise.resolve();
  for (let done = 0; done < o.orders; done += CHUNK) {
    const batch = Array.from({ length: Math.min(CHUNK, o.orders - done) }, () => {
      const customer = rng.pick(customers);
      const template = rng.weighted(templates);
      const createdAt = new Date(now.getTime() - rng.float() * days * 86_400_000);
      const sim = simulateOrder(
        rng,
        { id: rng.uuid(), customerId: customer.id, template, product: rng.pick(PRODUCTS[template]!), createdAt, now },
        (kind) => rng.pick(pools[kind]),
      );
      return { sim, customer, engineerId: rng.pick(customer.engineers) };
    });
    {
      const orderRows = batch.map(({ sim, customer, engineerId }) => {
        const s = sim.state;
        const lastEventAt = sim.events.at(-1)?.at ?? s.createdAt;
        return {
          id: s.id,
          external_ref: null,
          customer_id: customer.id,
          customer_country: customer.country,
          engineer_id: engineerId,
          product: sim.product,
          quantity: sim.quantity,
          status: s.status,
          promised_at: s.promisedAt,
          due_at: s.dueAt,
          hold_cause: s.holdCause,
          held_at: s.heldAt,
          shipped_at: s.shippedAt,
          delivered_at: s.deliveredAt,
          cancelled_at: s.cancelledAt,
          last_event_at: lastEventAt,
          last_seq: s.lastSeq,
          created_at: s.createdAt,
          updated_at: lastEventAt,
          late_alerted: sim.lateAlerted,
          at_risk_alerted: sim.atRiskAlerted,
          ...derivedColumns(sim.derived),
        };
      });
      const stepRows = batch.flatMap(({ sim }) =>
        sim.state.steps.map((st) => ({
          order_id: sim.state.id,
          position: st.position,
          stage: st.stage,
          factory_id: st.factoryId,
          planned_hours: st.plannedHours,
          after: st.after,
          planned_start: st.plannedStart,
          planned_end: st.plannedEnd,
          status: st.status,
          progress: st.progress,
          started_at: st.startedAt,
          completed_at: st.completedAt,
        })),
      );
      const eventRows = batch.flatMap(({ sim, customer }) => [
        {
          id: rng.uuid(),
          order_id: sim.state.id,
          customer_id: customer.id,
          seq: 1,
          type: 'created',
          stage: null,
          factory_id: null,
          actor: 'ops:world-generator',
          occurred_at: sim.state.createdAt,
          recorded_at: sim.state.createdAt,
          data: JSON.stringify({
            product: sim.product,
            quantity: sim.quantity,
            promisedAt: sim.state.promisedAt.toISOString(),
            template: sim.template,
          }),
        },
        ...sim.events.map((e, i) => ({
          id: rng.uuid(),
          order_id: sim.state.id,
          customer_id: customer.id,
          seq: i + 2,
          type: e.type,
          stage: e.stage,
          factory_id: e.factoryId,
          actor: e.type.startsWith('became_') ? 'system' : e.factoryId ? `factory:${e.factoryId}` : 'ops:world-generator',
          occurred_at: e.at,
          recorded_at: e.at,
          data: JSON.stringify(e.data),
        })),
      ]);
      await writing;
      writing = writer.write([
        { table: 'orders', rows: orderRows },
        { table: 'order_steps', rows: stepRows },
        { table: 'events', rows: eventRows },
      ]);
      events += eventRows.length;
      steps += stepRows.length;
    }
    progress('orders', Math.min(done + CHUNK, o.orders), o.orders);
  }
  await writing;
  await writer.finish();
  await rebuildRollups(db, now);
  return { customers: o.customers, engineers, factories: o.factories, orders: o.orders, events, steps, ms: Date.now() - started };
}
