import { sql, type CompiledQuery, type Kysely } from 'kysely';
import { fixedStatement } from '../db/fixed.js';
import { prepared, type Flight } from '../db/flight.js';
import type { DB, OrderRow, OrdersTable } from '../db/schema.js';
import { claimOutcomes, lostClaimsQuery, type Claim, type ClaimOutcome } from '../idempotency/store.js';
import type { OrderState } from '../orders/model.js';
import { stepsJson, toLoaded, type StepJson } from '../orders/repository.js';
import type { WriteView } from '../orders/state-cache.js';

/**
 * Orders the caller keeps from earlier writes, taken from its cache before the statement is built:
 * what the statement's answer refers to, whatever the cache holds by then.
 */
export type KeptOrders = Map<string, WriteView>;

/** A claim of one caller's key: keys are scoped to the caller. */
export type ScopedClaim = Claim & { scope: string };

/** How a scoped claim is named in maps. */
export const claimName = (scope: string, key: string) => `${scope}\u0000${key}`;

export interface ClaimedAndLoaded {
  /** By claimName(scope, key). */
  outcomes: Map<string, ClaimOutcome>;
  orders: Map<string, { row: OrderRow; state: OrderState }>;
}

const byScopeAndKey = (a: ScopedClaim, b: ScopedClaim) => {
  const x = claimName(a.scope, a.key);
  const y = claimName(b.scope, b.key);
  return x < y ? -1 : x > y ? 1 : 0;
};

/** The claims as claimsInsert's `keys` value: one JSON array, sorted. */
export function claimsValue(claims: ScopedClaim[]): string {
  const sorted = [...claims].sort(byScopeAndKey);
  return JSON.stringify(sorted.map((c) => ({ scope: c.scope, key: c.key, request_hash: c.hash, resource_id: c.resourceId })));
}

/**
 * The claims (claimsValue) as an insert to head a statement (`with claimed as (...)`, returning
 * scope and key of each claim won). Inserted in one sorted order, so two writers sharing keys
 * cannot deadlock.
 */
export const claimsInsert = (keys: never) => sql`
      insert into idempotency_keys (scope, key, request_hash, resource_id)
      select k.scope, k.key, k.request_hash, k.resource_id
      from rows from (jsonb_to_recordset(${keys}::jsonb) as (scope text, key text, request_hash text, resource_id uuid))
        with ordinality as k(scope, key, request_hash, resource_id, n)
      order by k.n
      on conflict (scope, key) do nothing
      returning scope, key`;

// Every column of orders by name, not o.*: the statement is prepared, and a prepared statement
// whose result changes shape (a migration adding a column under a running instance) fails.
const ORDER_COLUMNS = { id: 1, external_ref: 1, customer_id: 1, customer_country: 1, engineer_id: 1, product: 1, quantity: 1, status: 1,
  current_stages: 1, progress: 1, promised_at: 1, due_at: 1, projection_lead_minutes: 1, projection_floor_at: 1, at_risk_at: 1, hold_cause: 1,
  held_at: 1, shipped_at: 1, delivered_at: 1, cancelled_at: 1, last_event_at: 1, last_seq: 1, created_at: 1, updated_at: 1, at_risk_alerted: 1,
  late_alerted: 1, overrun_at: 1, late_start_at: 1 } satisfies Record<keyof OrdersTable, 1>;
const orderColumns = sql.join(Object.keys(ORDER_COLUMNS).map((c) => sql.ref(`o.${c}`)));
// The same, null for an order the caller keeps (its seq did not move): only id and seq come back.
const readColumns = sql.join(
  Object.keys(ORDER_COLUMNS).map((c) =>
    c === 'id' || c === 'last_seq' ? sql.ref(`o.${c}`) : sql`case when o.kept then null else ${sql.ref(`o.${c}`)} end as ${sql.ref(c)}`,
  ),
);

/**
 * The idempotency claims (see claimsInsert) and the orders with their steps, in one statement: an
 * append is a chain of round trips and this saves one. Run it once the orders' locks are held:
 * the statement's snapshot is taken after them, so it reads what the previous writer committed.
 * Orders are read whatever the claims give; the caller ignores those whose request is a replay.
 * Read its rows with claimedAndLoaded.
 */
const claimAndLoad = fixedStatement(['keys', 'ids', 'seqs'], (db, v) =>
  sql`
    with claimed as (${claimsInsert(v.keys)})
    select ${readColumns}, case when o.kept then null else ${stepsJson} end as steps_json, o.kept,
      (select coalesce(json_agg(claimed), '[]') from claimed) as won
    from (select 1) as one
    left join (
      select ${orderColumns}, o.last_seq = k.seq as kept
      from unnest(${v.ids}::uuid[], ${v.seqs}::int[]) as k(id, seq) join orders o on o.id = k.id
    ) o on true`.compile(db),
);

export function claimAndLoadQuery(db: Kysely<DB>, claims: ScopedClaim[], orderIds: string[], kept: KeptOrders = new Map()): CompiledQuery {
  const ids = [...new Set(orderIds)];
  // The seq of each order the caller keeps (orders/state-cache.ts); -1 reads the order in full.
  const seqs = ids.map((id) => kept.get(id)?.row.last_seq ?? -1);
  return prepared(claimAndLoad(db, { keys: claimsValue(claims), ids, seqs }));
}

type Row = OrderRow & { steps_json: StepJson[] | null; kept: boolean | null; won: Array<{ scope: string; key: string }> };

/**
 * The claims' outcomes and the orders, from claimAndLoadQuery's rows. Keys this transaction did
 * not win are replays or mismatches: their first claims are read back per caller (rare: retries),
 * in the same transaction (one more round trip, only then).
 */
export async function claimedAndLoaded(
  db: Kysely<DB>,
  rawRows: Array<Record<string, unknown>>,
  claims: ScopedClaim[],
  flight: Flight,
  kept: KeptOrders = new Map(),
): Promise<ClaimedAndLoaded> {
  const rows = rawRows as unknown as Row[];
  const sorted = [...claims].sort(byScopeAndKey);
  const won = new Set((rows[0]?.won ?? []).map((w) => claimName(w.scope, w.key)));
  const scopes = [...new Set(sorted.map((c) => c.scope))].map((scope) => {
    const mine = sorted.filter((c) => c.scope === scope);
    const wonHere = new Set(mine.filter((c) => won.has(claimName(scope, c.key))).map((c) => c.key));
    return { scope, mine, wonHere, query: lostClaimsQuery(db, scope, mine, wonHere) };
  });
  const asked = scopes.filter((s) => s.query);
  const answers = asked.length ? await flight.run(asked.map((s) => s.query!)) : [];
  const outcomes = new Map<string, ClaimOutcome>();
  for (const s of scopes) {
    const existing = s.query ? answers[asked.indexOf(s)]! : [];
    for (const [key, outcome] of claimOutcomes(s.mine, s.wonHere, existing as Parameters<typeof claimOutcomes>[2]))
      outcomes.set(claimName(s.scope, key), outcome);
  }
  const found = rows.filter((r) => r.id !== null && !r.kept).map(({ kept: _, won: __, ...r }) => r as OrderRow & { steps_json: StepJson[] });
  const orders = toLoaded(found);
  for (const r of rows) if (r.id !== null && r.kept) orders.set(r.id, kept.get(r.id)!);
  return { outcomes, orders };
}
