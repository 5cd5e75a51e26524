/** What authentication needs of an API key's row. */
export interface KeyRow {
  factory_id: string;
  secret_hash: Uint8Array;
}

/**
 * Keys that verified, kept so that a factory's every post does not cost a query (a round trip
 * and a wake-up of Postgres per update: BENCHMARKS.md). A key leaves the moment its revocation is
 * heard: at once on the instance that revoked it, on the others when Postgres delivers the NOTIFY
 * (a millisecond or so after the revoking commit). Nothing is trusted while this instance is not
 * listening, and everything is forgotten when it listens again: it may have missed a revocation.
 * The secret is still checked against the kept hash on every request.
 */
export class ApiKeyCache {
  private readonly entries = new Map<string, { row: KeyRow; at: number }>();
  // Bumped by every forget: a lookup that began before a revocation must not store what it read.
  private generation = 0;
  private trusted: () => boolean = () => false;

  constructor(
    private readonly capacity = 10_000,
    /** A revocation made behind the service's back (SQL by hand) is honoured after this long. */
    private readonly maxAgeMs = 60_000,
  ) {}

  /** From now on entries are served while `listening()` holds (see Notifier). */
  trustWhile(listening: () => boolean): void {
    this.trusted = listening;
  }

  get(id: string, now = Date.now()): KeyRow | undefined {
    if (!this.trusted()) return undefined;
    const e = this.entries.get(id);
    if (!e) return undefined;
    if (now - e.at > this.maxAgeMs) {
      this.entries.delete(id);
      return undefined;
    }
    return e.row;
  }

  /** Taken before the row is read; put stores the row only if nothing was forgotten since. */
  begin(): number {
    return this.generation;
  }

  put(id: string, row: KeyRow, since: number, now = Date.now()): void {
    if (since !== this.generation || !this.trusted()) return;
    if (this.entries.size >= this.capacity) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(id, { row, at: now });
  }

  forget(id: string): void {
    this.generation++;
    this.entries.delete(id);
  }

  clear(): void {
    this.generation++;
    this.entries.clear();
  }
}
