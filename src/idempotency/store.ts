import { hash } from 'node:crypto';
import type { CompiledQuery, Kysely, Transaction } from 'kysely';
import type { DB } from '../db/schema.js';
import { ProblemError } from '../http/problems.js';

export interface Claim {
  key: string;
  hash: string;
  /** The id the new resource will get if this claim wins. */
  resourceId: string;
}

export type ClaimOutcome = { kind: 'claimed' } | { kind: 'replay'; resourceId: string } | { kind: 'mismatch' };

/**
 * A stable hash of a request: the same JSON value gives the same hash whatever its key order.
 * Stored with each key, so its text must never change: keys sorted by code unit, undefined left
 * out, then SHA-256 in hex.
 */
export function requestHash(value: unknown): string {
  return hash('sha256', stableJson(value), 'hex');
}

function stableJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) {
    let s = '[';
    for (let i = 0; i < v.length; i++) s += (i ? ',' : '') + stableJson(v[i]);
    return s + ']';
  }
  const o = v as Record<string, unknown>;
  let s = '{';
  for (const k of Object.keys(o).sort()) {
    if (o[k] === undefined) continue;
    s += (s.length > 1 ? ',' : '') + JSON.stringify(k) + ':' + stableJson(o[k]);
  }
  return s + '}';
}

/**
 * Claims idempotency keys inside the caller's transaction. A key first seen here is inserted
 * (and stays only if the transaction commits); a key another transaction is inserting makes this
 * one wait on the unique index until that one commits or rolls back, so concurrent retries of
 * one request resolve to exactly one winner. Keys are claimed in sorted order, so two batches
 * sharing keys cannot deadlock on each other.
 */
export async function claimKeys(tx: Transaction<DB>, scope: string, claims: Claim[]): Promise<Map<string, ClaimOutcome>> {
  if (!claims.length) return new Map();
  const sorted = sortClaims(claims);
  const inserted = await tx
    .insertInto('idempotency_keys')
    .values(sorted.map((c) => ({ scope, key: c.key, request_hash: c.hash, resource_id: c.resourceId })))
    .onConflict((oc) => oc.columns(['scope', 'key']).doNothing())
    .returning('key')
    .execute();
  return settleClaims(tx, scope, sorted, new Set(inserted.map((r) => r.key)));
}

export const sortClaims = (claims: Claim[]) => [...claims].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));

/** The outcome of each claim, given the keys this transaction won: the others are replays or mismatches. */
export async function settleClaims(tx: Transaction<DB>, scope: string, claims: Claim[], won: Set<string>): Promise<Map<string, ClaimOutcome>> {
  const q = lostClaimsQuery(tx, scope, claims, won);
  return claimOutcomes(claims, won, q ? ((await tx.executeQuery(q)).rows as LostClaimRow[]) : []);
}

type LostClaimRow = { key: string; request_hash: string; resource_id: string };

/** The rows of the keys this transaction did not win, as they were first claimed; none if it won them all. */
export function lostClaimsQuery(db: Kysely<DB>, scope: string, claims: Claim[], won: Set<string>): CompiledQuery | undefined {
  const lost = claims.filter((c) => !won.has(c.key));
  if (!lost.length) return undefined;
  return db
    .selectFrom('idempotency_keys')
    .select(['key', 'request_hash', 'resource_id'])
    .where('scope', '=', scope)
    .where(
      'key',
      'in',
      lost.map((c) => c.key),
    )
    .compile();
}

/** Each claim's outcome, given the keys won and the rows of the others (lostClaimsQuery). */
export function claimOutcomes(claims: Claim[], won: Set<string>, existing: LostClaimRow[]): Map<string, ClaimOutcome> {
  const outcomes = new Map<string, ClaimOutcome>();
  const byKey = new Map(existing.map((r) => [r.key, r]));
  for (const c of claims) {
    if (won.has(c.key)) outcomes.set(c.key, { kind: 'claimed' });
    else {
      const row = byKey.get(c.key);
      // Claimed and given back between our insert and our read: rare, and a retry settles it.
      if (!row) throw new ProblemError(409, 'idempotency-key-in-flight', `a request with Idempotency-Key ${c.key} is in flight; retry`);
      outcomes.set(c.key, row.request_hash === c.hash ? { kind: 'replay', resourceId: row.resource_id } : { kind: 'mismatch' });
    }
  }
  return outcomes;
}

/** Gives back claims whose request failed, so a corrected retry with the same key can succeed; none for no keys. */
export function releaseKeysQuery(db: Kysely<DB>, scope: string, keys: string[]): CompiledQuery | undefined {
  return keys.length ? db.deleteFrom('idempotency_keys').where('scope', '=', scope).where('key', 'in', keys).compile() : undefined;
}
