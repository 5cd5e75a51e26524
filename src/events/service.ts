import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { principalId, type Principal } from '../auth/principal.js';
import type { WriteTransaction } from '../db/flight.js';
import type { DB, OrderRow } from '../db/schema.js';
import { forbidden, idempotencyMismatch, problem, ProblemError, validationProblem, type Problem } from '../http/problems.js';
import { releaseKeysQuery, requestHash, type ClaimOutcome } from '../idempotency/store.js';
import type { OrderState } from '../orders/model.js';
import { derive } from '../orders/projection.js';
import { changedSteps, cloneState, lockOrdersQuery, orderColumns } from '../orders/repository.js';
import { countedOf, orderFacts, type Fact } from '../ops/facts.js';
import { maySee } from '../orders/service.js';
import { viewAfterWrite, type OrderStateCache, type WriteView } from '../orders/state-cache.js';
import { claimAndLoadQuery, claimedAndLoaded, claimName, type ClaimedAndLoaded, type KeptOrders, type ScopedClaim } from './claim-and-load.js';
import { appendAndProjectQuery, eventsByIdQuery, eventsOf, type NewEvent, type OrderWrite } from './repository.js';
import { applyEvent, shippingOwners } from './rules.js';
import { eventInputSchema, type Event, type EventInput } from './schemas.js';

/** One status update to append: from a single POST or one item of a batch. */
export interface AppendRequest {
  orderId: string;
  idempotencyKey?: string;
  body: unknown;
  /** Where the item's fields sit in the request, for error paths: `body` or `events[3]`. */
  path: string;
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
}

const FUTURE_TOLERANCE_MS = 5 * 60_000;
const FACTORY_TYPES = new Set(['stage_started', 'stage_progress', 'stage_completed', 'quality_issue', 'shipped', 'delivered', 'note']);

const failure = (err: ProblemError): AppendResult => ({ status: err.status, error: err.toProblem() });

/** Validates an item on its own: its schema, its time, and whether this kind of caller may post its type. */
function parseItem(p: Principal, req: AppendRequest, now: Date): EventInput | ProblemError {
  const parsed = eventInputSchema.safeParse(req.body);
  if (!parsed.success) return validationProblem(parsed.error.issues, req.path);
  const input = parsed.data;
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

/** A factory posts only for the steps assigned to it (shipping: the shipping step or the route's last). */
function checkOwnership(p: Principal, state: OrderState, input: EventInput): ProblemError | undefined {
  if (p.role !== 'factory') return undefined;
  if (input.type === 'shipped' || input.type === 'delivered') {
    return shippingOwners(state).has(p.factoryId) ? undefined : forbidden(`only the shipping factory of this order may post ${input.type}`);
  }
  const stage = 'stage' in input ? input.stage : undefined;
  if (!stage) return undefined;
  const step = state.steps.find((s) => s.stage === stage);
  if (step && step.factoryId !== p.factoryId) return forbidden(`stage ${stage} of this order is assigned to another factory`);
  return undefined;
}

/** What appends write with: the database (queries are built on it) and its write transactions. */
export interface Writer {
  db: Kysely<DB>;
  transaction: WriteTransaction;
  /** Orders as this instance last committed them: a write to one need not load it again. */
  orders?: OrderStateCache;
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
 * Results come back in the items' order.
 */
export async function appendItems(w: Writer, items: AppendItem[], observer?: AppendObserver, now = new Date()): Promise<AppendResult[]> {
  const db = w.db;
  const results: Array<AppendResult | undefined> = new Array(items.length);
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

  // The orders as committed by this transaction, kept once it has committed.
  const committed: WriteView[] = [];
  await w.transaction(async (flight) => {
    const candidates = items.map((_, i) => i).filter((i) => !results[i] && !sameKeyAs.has(i));
    const orderIds = candidates.map((i) => items[i]!.orderId);
    const kept: KeptOrders = new Map();
    for (const id of orderIds) {
      const view = w.orders?.get(id);
      if (view) kept.set(id, view);
    }
    // First flight: the order locks, before anything writes (see lockOrdersForWrite), then in one
    // statement the claims (the first write) and the orders as their locks let them be.
    let loaded: ClaimedAndLoaded = { outcomes: new Map<string, ClaimOutcome>(), orders: new Map<string, { row: OrderRow; state: OrderState }>() };
    if (candidates.length) {
      const claimed = [...claims.values()];
      const [, rows] = await flight.run([lockOrdersQuery(db, orderIds)!, claimAndLoadQuery(db, claimed, orderIds, kept)]);
      loaded = await claimedAndLoaded(db, rows!, claimed, flight, kept);
    }
    const { outcomes, orders: locked } = loaded;
    const replays = new Map<number, string>();
    for (const [name, c] of claims) {
      const o = outcomes.get(name)!;
      if (o.kind === 'mismatch') results[c.first] = { status: 422, error: idempotencyProblem() };
      else if (o.kind === 'replay') replays.set(c.first, o.resourceId);
    }

    const pending = candidates.filter((i) => !results[i] && !replays.has(i));
    const current = new Map<string, OrderState>();
    for (const [id, { state }] of locked) current.set(id, state);

    const events: NewEvent[] = [];
    const failedKeys = new Map<string, string[]>();
    for (const i of pending) {
      const req = items[i]!;
      const p = req.principal;
      const input = inputs[i] as EventInput;
      const entry = locked.get(req.orderId);
      const state = current.get(req.orderId);
      try {
        if (!entry || !state || !maySee(p, entry.row, state.steps.map((s) => ({ factory_id: s.factoryId })))) {
          throw new ProblemError(404, 'not-found', 'order not found');
        }
        const denied = checkOwnership(p, state, input);
        if (denied) throw denied;
        const next = cloneState(state);
        const at = input.occurredAt ? new Date(input.occurredAt) : now;
        const recorded = applyEvent(next, input, at);
        next.lastSeq += 1;
        current.set(req.orderId, next);
        events.push({
          id: claimOf(i)?.resourceId || randomUUID(),
          orderId: req.orderId,
          customerId: state.customerId,
          seq: next.lastSeq,
          type: input.type,
          ...recorded,
          actor: scopes[i]!,
          occurredAt: at,
        });
        results[i] = { status: 201 };
      } catch (err) {
        if (!(err instanceof ProblemError)) throw err;
        results[i] = failure(err);
        if (req.idempotencyKey) failedKeys.set(scopes[i]!, [...(failedKeys.get(scopes[i]!) ?? []), req.idempotencyKey]);
      }
    }

    const writes: OrderWrite[] = [];
    const facts: Fact[] = [];
    for (const [id, state] of current) {
      const loadedView = locked.get(id)!;
      const { row, state: before } = loadedView;
      if (state === before) {
        committed.push(loadedView);
        continue;
      }
      const columns = orderColumns(state, derive(state, now), now);
      writes.push({ order: { id, ...columns }, steps: changedSteps(before, state) });
      committed.push(viewAfterWrite(row, columns, state));
      const after = countedOf({ ...columns, customer_country: row.customer_country });
      facts.push(...orderFacts({ counted: countedOf(row), state: before }, { counted: after, state }));
    }
    // Second flight, with the commit: the events, the orders' projections, their steps and KPI
    // facts (one statement), the keys of refused items given back, the replays' events.
    const append = appendAndProjectQuery(db, events, writes, facts);
    const release = [...failedKeys].map(([scope, keys]) => releaseKeysQuery(db, scope, keys)!);
    const replayed = eventsByIdQuery(db, [...replays.values()]);
    const answers = await flight.run([...(append ? [append] : []), ...release, ...(replayed ? [replayed] : [])], { commit: true });

    const byId = new Map(eventsOf(append ? answers[0]! : []).map((e) => [e.id, e]));
    let k = 0;
    for (const i of pending) if (results[i]!.status === 201) results[i]!.event = byId.get(events[k++]!.id);
    const replayedById = new Map(eventsOf(replayed ? answers.at(-1)! : []).map((e) => [e.id, e]));
    for (const [i, eventId] of replays) {
      const event = replayedById.get(eventId);
      results[i] = event ? { status: 200, event } : { status: 409, error: problem(409, 'idempotency-key-in-use', 'this Idempotency-Key belongs to another kind of request') };
    }
  });

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
