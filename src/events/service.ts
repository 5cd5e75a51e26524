import { randomUUID } from 'node:crypto';
import type { CompiledQuery, Kysely } from 'kysely';
import { principalId, type Principal } from '../auth/principal.js';
import type { Rider, WriteTransaction } from '../db/flight.js';
import type { DB } from '../db/schema.js';
import { forbidden, idempotencyMismatch, problem, ProblemError, validationProblem, type Problem } from '../http/problems.js';
import { requestHash, type ClaimOutcome } from '../idempotency/store.js';
import { lockOrdersQuery } from '../orders/repository.js';
import type { OrderStateCache, WriteView } from '../orders/state-cache.js';
import type { Announcement } from '../streams/notifier.js';
import { claimAndLoadQuery, claimedAndLoaded, claimName, type ClaimedAndLoaded, type KeptOrders, type ScopedClaim } from './claim-and-load.js';
import { attachEvents, judge, type Judging } from './judge.js';
import { claimIfKeptQuery, isStaleAppend } from './kept-append.js';
import { eventsByIdQuery, eventsOf } from './repository.js';
import { eventInputSchema, type Event, type EventInput } from './schemas.js';

/** One status update to append: from a single POST or one item of a batch. */
export interface AppendRequest {
  orderId: string;
  idempotencyKey?: string;
  body: unknown;
  /** Where the item's fields sit in the request, for error paths: `body` or `events[3]`. */
  path: string;
  /** The body was validated against eventInputSchema already (the single POST's route schema). */
  validated?: boolean;
}

export interface AppendResult {
  status: number;
  event?: Event;
  error?: Problem;
}

export interface AppendObserver {
  accepted(type: string): void;
  rejected(type: string, problem: string): void;
  replayed(): void;
  /** How a transaction went: on kept orders in one flight, found stale and redone, or on loaded orders. */
  transaction?(path: 'kept' | 'stale' | 'loaded'): void;
}

const FUTURE_TOLERANCE_MS = 5 * 60_000;
const FACTORY_TYPES = new Set(['stage_started', 'stage_progress', 'stage_completed', 'quality_issue', 'shipped', 'delivered', 'note']);

const failure = (err: ProblemError): AppendResult => ({ status: err.status, error: err.toProblem() });

/** Validates an item on its own: its schema, its time, and whether this kind of caller may post its type. */
function parseItem(p: Principal, req: AppendRequest, now: Date): EventInput | ProblemError {
  let input: EventInput;
  if (req.validated) input = req.body as EventInput;
  else {
    const parsed = eventInputSchema.safeParse(req.body);
    if (!parsed.success) return validationProblem(parsed.error.issues, req.path);
    input = parsed.data;
  }
  if (input.occurredAt && new Date(input.occurredAt).getTime() > now.getTime() + FUTURE_TOLERANCE_MS) {
    const path = `${req.path}.occurredAt`;
    return new ProblemError(400, 'validation-failed', `invalid ${path}`, {
      errors: [{ path, message: 'may not be more than 5 minutes in the future' }],
    });
  }
  if (p.role === 'factory' && !FACTORY_TYPES.has(input.type)) {
    return forbidden(`factory systems may not post ${input.type}; ops do`);
  }
  return input;
}

/** What appends write with: the database (queries are built on it) and its write transactions. */
export interface Writer {
  db: Kysely<DB>;
  transaction: WriteTransaction;
  /** Orders as this instance last committed them: a write to one need not load it again. */
  orders?: OrderStateCache;
  /** Tells the other instances and this one's tails of what a transaction appended (streams/notifier.ts). */
  announcement?: Announcement;
}

/** An update with the caller who posts it: items of one transaction may come from several callers. */
export interface AppendItem extends AppendRequest {
  principal: Principal;
}

/**
 * Appends status updates of one caller, each judged on its own: see appendItems.
 */
export async function appendEvents(
  w: Writer,
  p: Principal,
  requests: AppendRequest[],
  observer?: AppendObserver,
  now = new Date(),
): Promise<AppendResult[]> {
  if (p.role === 'customer') throw forbidden('customers read orders; they do not post events');
  return appendItems(
    w,
    requests.map((r) => ({ ...r, principal: p })),
    observer,
    now,
  );
}

/**
 * Appends status updates, each judged on its own and answered as if it were alone: in one
 * transaction, every accepted event is appended with the next seq of its order and the order's
 * projection is advanced, while a refused item changes nothing. Orders are locked, so writes to
 * one order queue and writes to different orders never wait for each other. Each item is checked
 * against its own caller (what it may post, which orders it may see, whose keys it claims).
 * Results come back in the items' order. Orders this instance keeps take the short way (one
 * round trip, appendKept), the others and anything the short way finds stale the long way.
 */
export async function appendItems(w: Writer, items: AppendItem[], observer?: AppendObserver, now = new Date()): Promise<AppendResult[]> {
  const db = w.db;
  let results: Array<AppendResult | undefined> = new Array(items.length);
  const scopes = items.map((it) => principalId(it.principal));
  const inputs = items.map((it) =>
    it.principal.role === 'customer' ? forbidden('customers read orders; they do not post events') : parseItem(it.principal, it, now),
  );

  // Rerouting to a factory that does not exist is bad input, caught before any lock is taken.
  const targets = [...new Set(inputs.flatMap((i) => (!(i instanceof ProblemError) && i.type === 'rerouted' ? [i.factoryId] : [])))];
  const known = new Set(
    targets.length ? (await db.selectFrom('factories').select('id').where('id', 'in', targets).execute()).map((f) => f.id) : [],
  );
  inputs.forEach((input, i) => {
    if (input instanceof ProblemError) results[i] = failure(input);
    else if (input.type === 'rerouted' && !known.has(input.factoryId)) {
      const path = `${items[i]!.path}.factoryId`;
      results[i] = failure(new ProblemError(400, 'validation-failed', `invalid ${path}`, { errors: [{ path, message: 'no such factory' }] }));
    }
  });

  // One claim per caller and distinct key; a key repeated among the items answers like a retry of its first use.
  const claims = new Map<string, ScopedClaim & { first: number }>();
  const claimOf = (i: number) => (items[i]!.idempotencyKey ? claims.get(claimName(scopes[i]!, items[i]!.idempotencyKey!)) : undefined);
  const sameKeyAs = new Map<number, number>();
  items.forEach((r, i) => {
    if (results[i] || !r.idempotencyKey) return;
    const hash = requestHash({ orderId: r.orderId, event: inputs[i] });
    const earlier = claimOf(i);
    if (!earlier) claims.set(claimName(scopes[i]!, r.idempotencyKey), { scope: scopes[i]!, key: r.idempotencyKey, hash, resourceId: randomUUID(), first: i });
    else if (earlier.hash !== hash) results[i] = { status: 422, error: idempotencyProblem() };
    else sameKeyAs.set(i, earlier.first);
  });

  const candidates = items.map((_, i) => i).filter((i) => !results[i] && !sameKeyAs.has(i));
  const judging: Judging = { db: w.db, items, inputs, scopes, claimOf, now };
  const claimed = [...claims.values()];
  const kept = candidates.length ? keptOrders(w, candidates.map((i) => items[i]!.orderId)) : undefined;
  let written: Written | undefined;
  if (kept) {
    try {
      written = await appendKept(w, judging, candidates, claimed, kept, [...results]);
      observer?.transaction?.('kept');
    } catch (err) {
      if (!isStaleAppend(err)) throw err;
      observer?.transaction?.('stale');
    }
  }
  if (!written) {
    written = await appendLoaded(w, judging, candidates, claims, results);
    if (candidates.length) observer?.transaction?.('loaded');
  }
  const { committed } = written;
  results = written.results;
  if (written.appended) w.announcement?.committed(written.rode);

  for (const view of committed) w.orders?.put(view);
  for (const [i, first] of sameKeyAs) {
    const r = results[first]!;
    results[i] = r.status === 201 ? { status: 200, event: r.event } : r;
  }
  const final = results as AppendResult[];
  if (observer) {
    final.forEach((r, i) => {
      const type = inputs[i] instanceof ProblemError ? 'invalid' : (inputs[i] as EventInput).type;
      if (r.status === 201) observer.accepted(type);
      else if (r.status === 200) observer.replayed();
      else observer.rejected(type, r.error?.type.split('/').at(-1) ?? 'unknown');
    });
  }
  return final;
}

const idempotencyProblem = (): Problem => idempotencyMismatch().toProblem();

/** Every order of the items, if this instance keeps them all (orders/state-cache.ts). */
function keptOrders(w: Writer, orderIds: string[]): KeptOrders | undefined {
  if (!w.orders) return undefined;
  const kept: KeptOrders = new Map();
  for (const id of orderIds) {
    const view = w.orders.get(id);
    if (!view) return undefined;
    kept.set(id, view);
  }
  return kept;
}

/** The answers of a committed transaction, its orders as committed (to keep), and whether it appended. */
interface Written {
  results: Array<AppendResult | undefined>;
  committed: WriteView[];
  appended: boolean;
  /** Whether the stream tail's read went behind the commit (streams/notifier.ts Announcement.ride). */
  rode: boolean;
}

/**
 * The short way, when this instance keeps every order: the items are judged on the kept orders
 * before anything is sent, and the locks, a guard, the append and the commit go to Postgres in
 * one flight: one round trip for the whole transaction. The guard (claimIfKeptQuery) fails it
 * if any order moved since or any key was claimed before: the caller then takes the long way.
 */
async function appendKept(
  w: Writer,
  j: Judging,
  candidates: number[],
  claims: ScopedClaim[],
  kept: KeptOrders,
  results: Array<AppendResult | undefined>,
): Promise<Written> {
  const judged = judge(j, candidates, kept, results);
  const orderIds = candidates.map((i) => j.items[i]!.orderId);
  const { append, release } = judged;
  let rode = false;
  await w.transaction(async (flight) => {
    const { statements, then } = announced(w, append);
    rode = Boolean(then);
    const answers = await flight.run([lockOrdersQuery(w.db, orderIds)!, claimIfKeptQuery(w.db, claims, kept), ...statements, ...release], {
      commit: true,
      then,
    });
    attachEvents(results, candidates, judged.events, append ? answers[2]! : []);
  });
  return { results, committed: judged.committed, appended: Boolean(append), rode };
}

/**
 * An append with what announces it, on a real Postgres: the NOTIFY its transaction carries, and
 * the stream tail's read to send behind its commit (streams/notifier.ts). Nothing without an append.
 */
function announced(w: Writer, append: CompiledQuery | undefined): { statements: CompiledQuery[]; then?: Rider } {
  if (!append) return { statements: [] };
  const notify = w.announcement?.query;
  return { statements: notify ? [append, notify] : [append], then: w.announcement?.ride() };
}

/**
 * The long way: the locks, then the claims and the orders in one statement (orders this instance
 * keeps come back only if they moved), the items judged on them, then the append with the commit.
 * Retries are answered here, with the event their key first made.
 */
async function appendLoaded(
  w: Writer,
  j: Judging,
  candidates: number[],
  claims: Map<string, ScopedClaim & { first: number }>,
  results: Array<AppendResult | undefined>,
): Promise<Written> {
  const db = w.db;
  let committed: WriteView[] = [];
  let appended = false;
  let rode = false;
  await w.transaction(async (flight) => {
    const orderIds = candidates.map((i) => j.items[i]!.orderId);
    const kept: KeptOrders = new Map();
    for (const id of orderIds) {
      const view = w.orders?.get(id);
      if (view) kept.set(id, view);
    }
    // First flight: the order locks, before anything writes (see lockOrdersForWrite), then in one
    // statement the claims (the first write) and the orders as their locks let them be.
    let loaded: ClaimedAndLoaded = { outcomes: new Map<string, ClaimOutcome>(), orders: new Map<string, WriteView>() };
    if (candidates.length) {
      const claimed = [...claims.values()];
      const [, rows] = await flight.run([lockOrdersQuery(db, orderIds)!, claimAndLoadQuery(db, claimed, orderIds, kept)]);
      loaded = await claimedAndLoaded(db, rows!, claimed, flight, kept);
    }
    const replays = new Map<number, string>();
    for (const [name, c] of claims) {
      const o = loaded.outcomes.get(name)!;
      if (o.kind === 'mismatch') results[c.first] = { status: 422, error: idempotencyProblem() };
      else if (o.kind === 'replay') replays.set(c.first, o.resourceId);
    }
    const pending = candidates.filter((i) => !results[i] && !replays.has(i));
    const judged = judge(j, pending, loaded.orders, results);

    // Second flight, with the commit: the append (see judge), the keys of refused items given
    // back, the replays' events.
    const { append, release } = judged;
    const replayed = eventsByIdQuery(db, [...replays.values()]);
    const { statements, then } = announced(w, append);
    rode = Boolean(then);
    const answers = await flight.run([...statements, ...release, ...(replayed ? [replayed] : [])], {
      commit: true,
      then,
    });
    attachEvents(results, pending, judged.events, append ? answers[0]! : []);
    const replayedById = new Map(eventsOf(replayed ? answers.at(-1)! : []).map((e) => [e.id, e]));
    for (const [i, eventId] of replays) {
      const event = replayedById.get(eventId);
      results[i] = event ? { status: 200, event } : { status: 409, error: problem(409, 'idempotency-key-in-use', 'this Idempotency-Key belongs to another kind of request') };
    }
    committed = judged.committed;
    appended = Boolean(append);
  });
  return { results, committed, appended, rode };
}
