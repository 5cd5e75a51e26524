import { mintToken } from '../../src/auth/jwt.js';
import type { Http } from './http.js';
import { JWT_SECRET } from './service.js';

/** A factory system of the bench: its id and a client that presents its API key. */
export interface FactoryClient {
  id: string;
  http: Http;
  orders: BenchOrder[];
}

export interface BenchOrder {
  id: string;
  customerId: string;
  factory: FactoryClient;
  /** Events the bench has posted to it, to pick the next valid one. */
  posted: number;
}

export interface Fixtures {
  customers: string[];
  factories: FactoryClient[];
  orders: BenchOrder[];
  ops: Http;
}

/** A person's token; each customer's portal user is a caller of its own, as in life. */
export const token = (role: 'customer' | 'ops' | 'admin', customerId?: string) =>
  mintToken(JWT_SECRET, { sub: customerId ? `bench-portal-${customerId}` : `bench-${role}`, role, ...(customerId ? { customerId } : {}) }, 6 * 3600);

// Two stages start at once (components are sourced in parallel), so progress can be reported on
// both from the first event.
const route = (factoryId: string) => [
  { stage: 'review', factoryId, plannedHours: 0.5 },
  { stage: 'cam', factoryId, plannedHours: 2 },
  { stage: 'drilling', factoryId, plannedHours: 2 },
  { stage: 'components', factoryId, plannedHours: 24, after: [] },
  { stage: 'smt', factoryId, plannedHours: 4, after: ['drilling', 'components'] },
];

/**
 * The next valid status update for an order, as a factory MES would send it: progress on the two
 * running stages, never backwards, then notes. `text` lets a caller stamp the event (e2e).
 */
export function nextEvent(order: BenchOrder, text?: string): Record<string, unknown> {
  const n = order.posted++;
  if (text === undefined && n < 198) return { type: 'stage_progress', stage: n % 2 ? 'components' : 'review', progress: Math.floor(n / 2) + 1 };
  return { type: 'note', text: text ?? `bench note ${n}` };
}

/** Customers, factories with API keys, and open orders routed to them, created through the API. */
export async function createFixtures(
  http: Http,
  o: { customers: number; factories: number; ordersPerFactory: number },
  onProgress: (done: number, total: number) => void,
): Promise<Fixtures> {
  const admin = http.with({ authorization: `Bearer ${await token('admin')}` });
  const total = o.customers + o.factories + o.factories * o.ordersPerFactory;
  let done = 0;
  const tick = () => onProgress(++done, total);

  const customers: string[] = [];
  for (let i = 0; i < o.customers; i++) {
    customers.push((await admin.expect<{ id: string }>(201, '/v1/customers', { name: `Bench customer ${i}`, country: 'DE' })).id);
    tick();
  }
  const factories: FactoryClient[] = [];
  for (let i = 0; i < o.factories; i++) {
    const f = await admin.expect<{ id: string }>(201, '/v1/factories', { name: `Bench fab ${i}`, kind: 'fabrication', country: 'CN', timezone: 'Asia/Shanghai' });
    const key = await admin.expect<{ key: string }>(201, `/v1/factories/${f.id}/api-keys`, { label: 'bench' });
    factories.push({ id: f.id, http: http.with({ 'x-api-key': key.key }), orders: [] });
    tick();
  }
  const promisedAt = new Date(Date.now() + 60 * 86_400_000).toISOString();
  const orders: BenchOrder[] = [];
  let c = 0;
  for (const factory of factories) {
    await Promise.all(
      Array.from({ length: o.ordersPerFactory }, async (_, i) => {
        const customerId = customers[c++ % customers.length]!;
        const body = { customerId, externalRef: `bench-${factory.id.slice(0, 8)}-${i}`, product: '4-layer FR4 100x80mm', quantity: 50, promisedAt, route: route(factory.id) };
        const order = await admin.expect<{ id: string }>(201, '/v1/orders', body);
        const bench: BenchOrder = { id: order.id, customerId, factory, posted: 0 };
        factory.orders.push(bench);
        orders.push(bench);
        tick();
      }),
    );
  }
  return { customers, factories, orders, ops: http.with({ authorization: `Bearer ${await token('ops')}` }) };
}
