import { randomUUID } from 'node:crypto';
import type { CompiledQuery, Kysely } from 'kysely';
import type { Principal } from '../auth/principal.js';
import type { DB } from '../db/schema.js';
import { forbidden, ProblemError } from '../http/problems.js';
import { releaseKeysQuery } from '../idempotency/store.js';
import type { OrderState } from '../orders/model.js';
import { derive } from '../orders/projection.js';
import { changedSteps, cloneState, orderColumns } from '../orders/repository.js';
import { maySee } from '../orders/service.js';
import { viewAfterWrite, type WriteView } from '../orders/state-cache.js';
import { countedOf, orderFacts, type Fact } from '../ops/facts.js';
import type { ScopedClaim } from './claim-and-load.js';
import { appendAndProjectQuery, eventsOf, type NewEvent, type OrderWrite } from './repository.js';
import { applyEvent, shippingOwners } from './rules.js';
import type { EventInput } from './schemas.js';
import type { AppendItem, AppendResult } from './service.js';

/** What judging an append's items needs beside the orders: the items, parsed, with their callers. */
export interface Judging {
  db: Kysely<DB>;
  items: AppendItem[];
  /** Each item's parsed body, or why it was refused before any order was read. */
  inputs: Array<EventInput | ProblemError>;
  /** Each item's caller, as events record it and keys are scoped. */
  scopes: string[];
  /** The claim of an item's key, if it has one. */
  claimOf(i: number): ScopedClaim | undefined;
  now: Date;
}

/** The statements that write what the judged items change, and the orders as they will stand. */
export interface Judged {
  /** The accepted events, in the items' order. */
  events: NewEvent[];
  /** The events, the orders' projections, their steps and KPI facts: one statement, none if nothing changed. */
  append: CompiledQuery | undefined;
  /** The keys of refused items, given back. */
  release: CompiledQuery[];
  /** Every order judged, as committed once the transaction is. */
  committed: WriteView[];
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

/**
 * Judges the pending items in order on the orders as they stand (each item sees the ones before
 * it), sets each one's result (201, or the problem that refuses it), and builds what the
 * accepted ones write. Pure: nothing is sent.
 */
export function judge(j: Judging, pending: number[], orders: ReadonlyMap<string, WriteView>, results: Array<AppendResult | undefined>): Judged {
  const current = new Map<string, OrderState>();
  for (const [id, { state }] of orders) current.set(id, state);
  const events: NewEvent[] = [];
  const failedKeys = new Map<string, string[]>();
  for (const i of pending) {
    const req = j.items[i]!;
    const p = req.principal;
    const input = j.inputs[i] as EventInput;
    const entry = orders.get(req.orderId);
    const state = current.get(req.orderId);
    try {
      if (!entry || !state || !maySee(p, entry.row, state.steps.map((s) => ({ factory_id: s.factoryId })))) {
        throw new ProblemError(404, 'not-found', 'order not found');
      }
      const denied = checkOwnership(p, state, input);
      if (denied) throw denied;
      const next = cloneState(state);
      const at = input.occurredAt ? new Date(input.occurredAt) : j.now;
      const recorded = applyEvent(next, input, at);
      next.lastSeq += 1;
      current.set(req.orderId, next);
      events.push({
        id: j.claimOf(i)?.resourceId || randomUUID(),
        orderId: req.orderId,
        customerId: state.customerId,
        seq: next.lastSeq,
        type: input.type,
        ...recorded,
        actor: j.scopes[i]!,
        occurredAt: at,
      });
      results[i] = { status: 201 };
    } catch (err) {
      if (!(err instanceof ProblemError)) throw err;
      results[i] = { status: err.status, error: err.toProblem() };
      if (req.idempotencyKey) failedKeys.set(j.scopes[i]!, [...(failedKeys.get(j.scopes[i]!) ?? []), req.idempotencyKey]);
    }
  }

  const writes: OrderWrite[] = [];
  const facts: Fact[] = [];
  const committed: WriteView[] = [];
  for (const [id, state] of current) {
    const view = orders.get(id)!;
    const { row, state: before } = view;
    if (state === before) {
      committed.push(view);
      continue;
    }
    const columns = orderColumns(state, derive(state, j.now), j.now);
    writes.push({ order: { id, ...columns }, steps: changedSteps(before, state) });
    committed.push(viewAfterWrite(row, columns, state));
    const after = countedOf({ ...columns, customer_country: row.customer_country });
    facts.push(...orderFacts({ counted: countedOf(row), state: before }, { counted: after, state }));
  }
  return {
    events,
    append: appendAndProjectQuery(j.db, events, writes, facts),
    release: [...failedKeys].map(([scope, keys]) => releaseKeysQuery(j.db, scope, keys)!),
    committed,
  };
}

/** Gives each accepted item its event, from the rows of the append (appendAndProjectQuery). */
export function attachEvents(results: Array<AppendResult | undefined>, pending: number[], events: NewEvent[], rows: Array<Record<string, unknown>>) {
  const byId = new Map(eventsOf(rows).map((e) => [e.id, e]));
  let k = 0;
  for (const i of pending) if (results[i]!.status === 201) results[i]!.event = byId.get(events[k++]!.id);
}
