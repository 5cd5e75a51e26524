/** An order's route as the API writes it (JSON, UTF-8), as of the order's seq it was read at. */
export interface KeptRoute {
  seq: number;
  json: Buffer;
}

/**
 * The routes of the orders listed last, as JSON bytes, each kept with the seq of the order it was
 * read at. Every writer of a route advances its order's seq in the same statement
 * (events/repository.ts appendAndProject; the alert job's events), so a route kept at the seq a
 * list page reads for its order is exactly the route Postgres would write again. Ops boards and
 * portals ask for the same pages over and over; a page whose routes are all kept needs one
 * statement instead of two, and Postgres writes no JSON. Least recently listed first out.
 */
export class RouteCache {
  private readonly entries = new Map<string, KeptRoute>();

  constructor(readonly capacity: number) {}

  /** The route of an order at exactly this seq, if kept. */
  get(id: string, seq: number): Buffer | undefined {
    const kept = this.entries.get(id);
    if (kept?.seq !== seq) return undefined;
    // Listed again: last out.
    this.entries.delete(id);
    this.entries.set(id, kept);
    return kept.json;
  }

  put(id: string, route: KeptRoute): void {
    if (this.capacity === 0) return;
    this.entries.delete(id);
    if (this.entries.size >= this.capacity) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(id, route);
  }

  get size(): number {
    return this.entries.size;
  }
}
