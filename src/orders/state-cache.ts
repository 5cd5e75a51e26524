import type { OrderRow } from '../db/schema.js';
import type { OrderState } from './model.js';

/** An order as a write sees it: its row and its state, as committed at `row.last_seq`. */
export interface WriteView {
  row: OrderRow;
  state: OrderState;
}

/**
 * What a `real` column gives back for a number written to it: Postgres keeps a float4 and prints
 * its shortest exact decimal, which pg reads as a double. A kept state must hold what a load would
 * read (33.3 posted stays 33.3; 33.30000001 comes back as 33.3), or the rules could judge a kept
 * order differently from a loaded one ("progress never moves backwards").
 */
export function asStoredReal(x: number): number {
  // The common case, whole percentages: a float4 holds every integer below 2^24 exactly.
  if (Number.isInteger(x) && Math.abs(x) < 16_777_216) return x;
  const f = Math.fround(x);
  if (!Number.isFinite(f)) return f;
  for (let digits = 1; digits <= 9; digits++) {
    const shortest = Number(f.toPrecision(digits));
    if (Math.fround(shortest) === f) return shortest;
  }
  return f;
}

/**
 * The orders this instance wrote last, as they were committed, so that the next write to one of
 * them need not load and parse its row and route again (a JSON aggregate of its steps): the write
 * sends the seq it holds, and Postgres sends the order back only if its seq moved (another
 * instance, the alert job). Every writer of an order advances its seq, so an order whose seq did
 * not move is exactly what is kept. Least recently written first out.
 */
export class OrderStateCache {
  private readonly entries = new Map<string, WriteView>();

  constructor(private readonly capacity = 20_000) {}

  get(id: string): WriteView | undefined {
    return this.entries.get(id);
  }

  /** Keeps an order as committed; only ever after its transaction committed. */
  put(view: WriteView): void {
    const id = view.row.id;
    this.entries.delete(id);
    if (this.entries.size >= this.capacity) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(id, view);
  }

  views(): IterableIterator<WriteView> {
    return this.entries.values();
  }
}

/** An order's row and state after a write, as a load would read them back. */
export function viewAfterWrite(row: OrderRow, columns: Partial<OrderRow>, state: OrderState): WriteView {
  const after = { ...row, ...columns } as OrderRow;
  after.progress = asStoredReal(after.progress);
  return { row: after, state: { ...state, steps: state.steps.map((s) => ({ ...s, progress: asStoredReal(s.progress) })) } };
}
