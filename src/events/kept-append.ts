import { sql, type CompiledQuery, type Kysely } from 'kysely';
import { fixedStatement } from '../db/fixed.js';
import { prepared } from '../db/flight.js';
import type { DB } from '../db/schema.js';
import { claimsInsert, claimsValue, type KeptOrders, type ScopedClaim } from './claim-and-load.js';

/**
 * The guard of an append judged on kept orders (orders/state-cache.ts), sent in the same flight
 * as the append and its commit: it claims the keys and checks that every order is still at the
 * seq this instance kept. If an order moved (another instance, the alert job) or a key was
 * claimed before (a retry), it raises STALE_APPEND: the statements behind it fail, the commit
 * rolls the transaction back, and the append is judged again on loaded orders. Run it once the
 * orders' locks are held, so that no seq moves after it looked.
 */
const claimIfKept = fixedStatement(['keys', 'claims', 'ids', 'seqs', 'orders'], (db, v) =>
  sql`
    with claimed as (${claimsInsert(v.keys)})
    select orderstream_expect(
      (select count(*) from claimed) = ${v.claims}::int
        and (select count(*) from unnest(${v.ids}::uuid[], ${v.seqs}::int[]) as k(id, seq)
          join orders o on o.id = k.id and o.last_seq = k.seq and o.id = any(${v.ids}::uuid[])) = ${v.orders}::int,
      'kept orders moved or keys were claimed before') as ok`.compile(db),
);

export function claimIfKeptQuery(db: Kysely<DB>, claims: ScopedClaim[], kept: KeptOrders): CompiledQuery {
  const ids = [...kept.keys()];
  const seqs = ids.map((id) => kept.get(id)!.row.last_seq);
  return prepared(claimIfKept(db, { keys: claimsValue(claims), claims: claims.length, ids, seqs, orders: ids.length }));
}

/** The SQLSTATE orderstream_expect raises (migration 0009). */
const STALE_APPEND = 'OS001';

export const isStaleAppend = (err: unknown) => (err as { code?: unknown } | null)?.code === STALE_APPEND;
