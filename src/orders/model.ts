// The in-memory shape of an order while a write decides what happens to it. Loaded under the
// order's row lock, changed by the pure functions of rules.ts and projection.ts, then saved.

export type OrderStatus = 'open' | 'on_hold' | 'shipped' | 'delivered' | 'cancelled';
export type StepStatus = 'pending' | 'in_progress' | 'done';

export const UNFINISHED: readonly OrderStatus[] = ['open', 'on_hold', 'shipped'];

/** The hold cause that is the customer's: it pauses the promise clock and is not the factory's lateness. */
export const CUSTOMER_HOLD = 'engineering_query';

/** The stage that, when a route has it, is the carrier's leg: `shipped` starts it, `delivered` ends it. */
export const SHIPPING_STAGE = 'shipping';

export interface StepState {
  position: number;
  stage: string;
  factoryId: string;
  plannedHours: number;
  /** Shared between a state and its clones (cloneState): never changed in place. */
  after: readonly string[];
  plannedStart: Date;
  plannedEnd: Date;
  status: StepStatus;
  progress: number;
  startedAt: Date | null;
  completedAt: Date | null;
}

export interface OrderState {
  id: string;
  customerId: string;
  status: OrderStatus;
  promisedAt: Date;
  /** The promise moved by the time spent waiting on the customer (engineering queries). */
  dueAt: Date;
  createdAt: Date;
  holdCause: string | null;
  heldAt: Date | null;
  shippedAt: Date | null;
  deliveredAt: Date | null;
  cancelledAt: Date | null;
  lastSeq: number;
  steps: StepState[];
}

/** What the projection derives from the state; stored on the order row so reads and filters are cheap. */
export interface Derived {
  currentStages: string[];
  progress: number;
  /** Projected completion = max(now + leadMinutes, floorAt); null once the order is finished. */
  projectionLeadMinutes: number | null;
  projectionFloorAt: Date | null;
  /** The instant after which the order is at risk if nothing else happens; null once finished. */
  atRiskAt: Date | null;
  /** When the first in-progress step passes its planned hours (stage overrun); null if none runs. */
  overrunAt: Date | null;
  /** The earliest planned start among steps ready to start but not started (late start); null if none. */
  lateStartAt: Date | null;
}
