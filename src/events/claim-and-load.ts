import { sql, type Transaction } from 'kysely';
import type { DB, OrderRow } from '../db/schema.js';
import { settleClaims, sortClaims, type Claim, type ClaimOutcome } from '../idempotency/store.js';
import type { OrderState } from '../orders/model.js';
import { stepsJson, toLoaded, type StepJson } from '../orders/repository.js';

export interface ClaimedAndLoaded {
  outcomes: Map<string, ClaimOutcome>;
  orders: Map<string, { row: OrderRow; state: OrderState }>;
}

/**
 * The idempotency claims (see claimKeys) and the orders with their steps, in one statement: an
 * append is a chain of round trips and this saves one. Call it once the orders' locks are held:
 * the statement's snapshot is taken after them, so it reads what the previous writer committed.
 * Orders are read whatever the claims give; the caller ignores those whose request is a replay.
 */
export async function claimAndLoad(tx: Transaction<DB>, scope: string, claims: Claim[], orderIds: string[]): Promise<ClaimedAndLoaded> {
  const sorted = sortClaims(claims);
  const keys = JSON.stringify(sorted.map((c) => ({ key: c.key, request_hash: c.hash, resource_id: c.resourceId })));
  const ids = [...new Set(orderIds)];
  const { rows } = await sql<OrderRow & { steps_json: StepJson[] | null; won: string[] }>`
    with claimed as (
      insert into idempotency_keys (scope, key, request_hash, resource_id)
      select ${scope}, k.key, k.request_hash, k.resource_id
      from rows from (jsonb_to_recordset(${keys}::jsonb) as (key text, request_hash text, resource_id uuid))
        with ordinality as k(key, request_hash, resource_id, n)
      order by k.n
      on conflict (scope, key) do nothing
      returning key)
    select o.*, ${stepsJson} as steps_json, (select coalesce(json_agg(key), '[]') from claimed) as won
    from (select 1) as one
    left join orders o on o.id = any(${ids}::uuid[])`.execute(tx);
  const won = new Set(rows[0]?.won ?? []);
  const found = rows.filter((r) => r.id !== null) as Array<OrderRow & { steps_json: StepJson[] }>;
  return { outcomes: await settleClaims(tx, scope, sorted, won), orders: toLoaded(found) };
}
