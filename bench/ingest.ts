import { randomBytes } from 'node:crypto';
import { nextEvent, type BenchOrder, type FactoryClient } from './lib/fixtures.js';
import { closedLoop, type LoadResult, type Meter } from './lib/load.js';

const runId = randomBytes(4).toString('hex');
let keySeq = 0;
const idempotencyKey = () => `bench-${runId}-${++keySeq}`;

/**
 * ingest.single: each factory client posts one event at a time to its own orders, round robin,
 * with an Idempotency-Key, through POST /v1/orders/:id/events. Every reply must be a 201.
 */
export async function ingestSingle(factories: FactoryClient[], o: { seconds: number; onTick?: (f: number) => void; meter?: Meter }): Promise<LoadResult> {
  const cursors = factories.map(() => 0);
  return closedLoop({ workers: factories.length, seconds: o.seconds, onTick: o.onTick, meter: o.meter }, async (w) => {
    const f = factories[w]!;
    const order = f.orders[cursors[w]! % f.orders.length]!;
    cursors[w]! += 1;
    const r = await f.http.post(`/v1/orders/${order.id}/events`, nextEvent(order), { 'idempotency-key': idempotencyKey() });
    if (r.status !== 201) throw new Error(`ingest.single: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
    return 1;
  });
}

export function batchOf(orders: BenchOrder[], from: number, size: number, text?: () => string) {
  const events = [];
  for (let i = 0; i < size; i++) {
    const order = orders[(from + i) % orders.length]!;
    events.push({ orderId: order.id, idempotencyKey: idempotencyKey(), ...nextEvent(order, text?.()) });
  }
  return { events };
}

/** Posts one batch and checks that every item was accepted; returns the events accepted. */
export async function postBatch(f: FactoryClient, body: { events: unknown[] }): Promise<number> {
  const r = await f.http.post<{ results: Array<{ status: number; error?: unknown }> }>('/v1/events/batch', body);
  if (r.status !== 200) throw new Error(`batch: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
  const bad = r.body.results.find((x) => x.status !== 201);
  if (bad) throw new Error(`batch item: ${JSON.stringify(bad).slice(0, 300)}`);
  return r.body.results.length;
}

/** ingest.batch: each factory client posts batches of `size` events, one for each of `size` of its orders. */
export async function ingestBatch(
  factories: FactoryClient[],
  o: { size: number; seconds: number; onTick?: (f: number) => void; meter?: Meter },
): Promise<LoadResult> {
  const cursors = factories.map(() => 0);
  return closedLoop({ workers: factories.length, seconds: o.seconds, onTick: o.onTick, meter: o.meter }, async (w) => {
    const f = factories[w]!;
    const body = batchOf(f.orders, cursors[w]!, o.size);
    cursors[w]! += o.size;
    return postBatch(f, body);
  });
}
