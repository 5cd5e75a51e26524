// The order as the simulator reads it back after a refusal, to tell "already so" from "went wrong".

export interface OrderView {
  id: string;
  status: 'open' | 'on_hold' | 'shipped' | 'delivered' | 'cancelled';
  route: Array<{ stage: string; factoryId: string; status: 'pending' | 'in_progress' | 'done'; progress: number }>;
}

/** Whether the order already shows what the event was meant to do (a retry whose first try landed). */
export function alreadyApplied(order: OrderView, body: Record<string, unknown>): boolean {
  const step = typeof body.stage === 'string' ? order.route.find((s) => s.stage === body.stage) : undefined;
  switch (body.type) {
    case 'stage_started':
      return step !== undefined && step.status !== 'pending';
    case 'stage_progress':
      return step !== undefined && (step.status === 'done' || step.progress >= Number(body.progress));
    case 'stage_completed':
      return step?.status === 'done';
    case 'shipped':
      return order.status === 'shipped' || order.status === 'delivered';
    case 'delivered':
      return order.status === 'delivered';
    case 'hold':
      return order.status === 'on_hold';
    case 'resumed':
      return order.status !== 'on_hold';
    case 'rerouted':
      return step?.factoryId === body.factoryId;
    default:
      return false;
  }
}

export const WORK_EVENTS = new Set(['stage_started', 'stage_progress', 'stage_completed', 'shipped', 'delivered']);
