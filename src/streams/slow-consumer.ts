/**
 * Decides when a client is too slow. A burst (one tail read fans out up to a batch of events at
 * once) may queue more than the limit before the client has had a chance to read, so the limit
 * must be exceeded for a grace period before the client is dropped; a hard cap of a multiple of
 * the limit bounds memory whatever the timing.
 */
export class SlowConsumerGuard {
  private overSince: number | undefined;

  constructor(
    private readonly limitBytes: number,
    private readonly graceMs = 2000,
    private readonly hardFactor = 8,
  ) {}

  /** False when the client must be dropped, given the bytes queued to it now. */
  ok(queuedBytes: number, now = Date.now()): boolean {
    if (queuedBytes <= this.limitBytes) {
      this.overSince = undefined;
      return true;
    }
    if (queuedBytes > this.limitBytes * this.hardFactor) return false;
    this.overSince ??= now;
    return now - this.overSince < this.graceMs;
  }
}
