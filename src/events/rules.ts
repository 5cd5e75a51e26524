import { conflict } from '../http/problems.js';
import { CUSTOMER_HOLD, SHIPPING_STAGE, type OrderState, type StepState } from '../orders/model.js';
import type { EventInput } from './schemas.js';

/** What an accepted event records, besides its order, seq, actor and times. */
export interface Recorded {
  stage: string | null;
  factoryId: string | null;
  data: Record<string, unknown>;
}

const WORK_TYPES = new Set(['stage_started', 'stage_progress', 'stage_completed', 'shipped', 'delivered']);

function stepOf(state: OrderState, stage: string): StepState {
  const step = state.steps.find((s) => s.stage === stage);
  if (!step) throw conflict('stage-not-on-route', `stage ${stage} is not on this order's route`);
  return step;
}

function startStep(state: OrderState, step: StepState, at: Date) {
  const waiting = step.after.filter((dep) => state.steps.find((s) => s.stage === dep)?.status !== 'done');
  if (waiting.length) {
    throw conflict('predecessors-not-done', `stage ${step.stage} waits for ${waiting.join(', ')} to be completed`);
  }
  step.status = 'in_progress';
  step.startedAt = at;
}

function notBeforeStart(step: StepState, at: Date) {
  if (step.startedAt && at < step.startedAt) {
    throw conflict('time-before-start', `occurredAt is before stage ${step.stage} started (${step.startedAt.toISOString()})`);
  }
}

/** Data fields of the input: everything but what the event's envelope carries. */
function dataOf(input: EventInput): Record<string, unknown> {
  const data: Record<string, unknown> = { ...input };
  for (const envelope of ['type', 'occurredAt', 'stage', 'factoryId']) delete data[envelope];
  return data;
}

/**
 * Applies one posted event to the order's state, in place, or throws a 409 that says why not.
 * The transition rules of the product live here and nowhere else.
 */
export function applyEvent(state: OrderState, input: EventInput, at: Date): Recorded {
  if (state.status === 'delivered' || state.status === 'cancelled') {
    throw conflict('order-closed', `the order is ${state.status}; it takes no further events`);
  }
  if (state.status === 'on_hold' && WORK_TYPES.has(input.type)) {
    throw conflict('order-on-hold', `the order is on hold (${state.holdCause}); post resumed first`);
  }
  const data = dataOf(input);
  switch (input.type) {
    case 'stage_started': {
      const step = stepOf(state, input.stage);
      if (step.status !== 'pending') throw conflict('stage-already-started', `stage ${step.stage} is already ${step.status.replace('_', ' ')}`);
      startStep(state, step, at);
      return { stage: step.stage, factoryId: step.factoryId, data };
    }
    case 'stage_progress': {
      const step = stepOf(state, input.stage);
      if (step.status === 'done') throw conflict('stage-done', `stage ${step.stage} is already done`);
      if (step.status === 'pending') startStep(state, step, at); // a report of progress implies the start
      notBeforeStart(step, at);
      if (input.progress < step.progress) {
        throw conflict('progress-backwards', `progress of ${step.stage} may not move backwards (now ${step.progress}, got ${input.progress})`);
      }
      step.progress = input.progress;
      return { stage: step.stage, factoryId: step.factoryId, data };
    }
    case 'stage_completed': {
      const step = stepOf(state, input.stage);
      if (step.status === 'done') throw conflict('stage-done', `stage ${step.stage} is already done`);
      if (step.status === 'pending') startStep(state, step, at);
      notBeforeStart(step, at);
      step.status = 'done';
      step.progress = 100;
      step.completedAt = at;
      return { stage: step.stage, factoryId: step.factoryId, data };
    }
    case 'quality_issue': {
      const step = input.stage ? stepOf(state, input.stage) : undefined;
      return { stage: step?.stage ?? null, factoryId: step?.factoryId ?? null, data };
    }
    case 'hold': {
      if (state.status !== 'open') throw conflict('not-open', `only an open order can be put on hold (it is ${state.status})`);
      state.status = 'on_hold';
      state.holdCause = input.cause;
      state.heldAt = at;
      // Attributed to the stage (and factory) it stops, when that is one: for the factory's KPIs.
      const running = state.steps.filter((s) => s.status === 'in_progress');
      const factories = new Set(running.map((s) => s.factoryId));
      return {
        stage: running.length === 1 ? running[0]!.stage : null,
        factoryId: factories.size === 1 ? [...factories][0]! : null,
        data: { ...data, stages: running.map((s) => s.stage) },
      };
    }
    case 'resumed': {
      if (state.status !== 'on_hold') throw conflict('not-on-hold', 'the order is not on hold');
      // Time spent waiting on the customer moves the promise: the clock was paused.
      if (state.holdCause === CUSTOMER_HOLD && state.heldAt && at > state.heldAt) {
        state.dueAt = new Date(state.dueAt.getTime() + (at.getTime() - state.heldAt.getTime()));
      }
      state.status = 'open';
      state.holdCause = null;
      state.heldAt = null;
      return { stage: null, factoryId: null, data };
    }
    case 'shipped': {
      if (state.status !== 'open') throw conflict('not-open', `the order is ${state.status}; only an open order can ship`);
      const unfinished = state.steps.filter((s) => s.stage !== SHIPPING_STAGE && s.status !== 'done').map((s) => s.stage);
      if (unfinished.length) throw conflict('stages-not-done', `cannot ship before ${unfinished.join(', ')} are completed`);
      const shipping = state.steps.find((s) => s.stage === SHIPPING_STAGE);
      if (shipping?.status === 'pending') startStep(state, shipping, at);
      state.status = 'shipped';
      state.shippedAt = at;
      return { stage: shipping?.stage ?? null, factoryId: shipping?.factoryId ?? null, data };
    }
    case 'delivered': {
      if (state.status !== 'shipped') throw conflict('not-shipped', 'the order must be shipped before it is delivered');
      const shipping = state.steps.find((s) => s.stage === SHIPPING_STAGE);
      if (shipping) notBeforeStart(shipping, at);
      if (state.shippedAt && at < state.shippedAt) {
        throw conflict('time-before-start', `occurredAt is before the order shipped (${state.shippedAt.toISOString()})`);
      }
      if (shipping && shipping.status !== 'done') {
        shipping.status = 'done';
        shipping.progress = 100;
        shipping.completedAt = at;
      }
      state.status = 'delivered';
      state.deliveredAt = at;
      return { stage: shipping?.stage ?? null, factoryId: shipping?.factoryId ?? null, data };
    }
    case 'cancelled': {
      if (state.status === 'shipped') throw conflict('already-shipped', 'a shipped order cannot be cancelled');
      state.status = 'cancelled';
      state.cancelledAt = at;
      return { stage: null, factoryId: null, data };
    }
    case 'note': {
      const step = input.stage ? stepOf(state, input.stage) : undefined;
      return { stage: step?.stage ?? null, factoryId: step?.factoryId ?? null, data };
    }
    case 'rerouted': {
      const step = stepOf(state, input.stage);
      if (step.status !== 'pending') throw conflict('stage-not-pending', `stage ${step.stage} is ${step.status.replace('_', ' ')}; only pending stages can be re-routed`);
      if (step.factoryId === input.factoryId) throw conflict('same-factory', `stage ${step.stage} is already assigned to that factory`);
      const from = step.factoryId;
      step.factoryId = input.factoryId;
      return { stage: step.stage, factoryId: input.factoryId, data: { ...data, fromFactoryId: from } };
    }
  }
}

/** Steps whose ownership lets a factory post `shipped` / `delivered`: the shipping step, else the route's sinks. */
export function shippingOwners(state: OrderState): Set<string> {
  const shipping = state.steps.find((s) => s.stage === SHIPPING_STAGE);
  if (shipping) return new Set([shipping.factoryId]);
  const waitedOn = new Set(state.steps.flatMap((s) => s.after));
  return new Set(state.steps.filter((s) => !waitedOn.has(s.stage)).map((s) => s.factoryId));
}
