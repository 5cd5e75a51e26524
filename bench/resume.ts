import { postBatch, batchOf } from './ingest.js';
import { token, type Fixtures } from './lib/fixtures.js';
import { connect } from './lib/sockets.js';
import { nowMs, sleep } from './lib/stats.js';

/**
 * A customer's portal goes away with its last cursor; `events` events of its orders are written
 * meanwhile; it reconnects and subscribes with that cursor. The figure is the time from the
 * subscribe to the last missed event received.
 */
export async function resume(url: string, f: Fixtures, events: number, onProgress?: (n: number, total: number) => void): Promise<{ events: number; ms: number }> {
  const customerId = f.customers[0]!;
  const auth = { token: await token('customer', customerId) };
  const orders = f.orders.filter((o) => o.customerId === customerId);
  const factory = orders[0]!.factory;
  const mine = orders.filter((o) => o.factory === factory);

  const first = await connect(`${url}/v1`, auth);
  const ack = (await first.emitWithAck('subscribe', { topic: `customer:${customerId}` })) as { ok: boolean; cursor: string };
  if (!ack.ok) throw new Error('resume: subscribe refused');
  first.disconnect();

  for (let done = 0; done < events; ) {
    const n = Math.min(500, events - done);
    done += await postBatch(factory, batchOf(mine, done, n));
    onProgress?.(done, events);
  }
  await sleep(500);

  const again = await connect(`${url}/v1`, auth);
  let received = 0;
  const started = nowMs();
  const finished = new Promise<number>((resolve) => {
    again.on('event', () => {
      if (++received === events) resolve(nowMs() - started);
    });
  });
  const reply = (await again.emitWithAck('subscribe', { topic: `customer:${customerId}`, after: ack.cursor })) as { ok: boolean };
  if (!reply.ok) throw new Error('resume: subscribe with cursor refused');
  const ms = await Promise.race([finished, sleep(60_000).then(() => NaN)]);
  again.disconnect();
  if (Number.isNaN(ms)) throw new Error(`resume: ${received} of ${events} events in 60 s`);
  return { events, ms: Math.round(ms) };
}
