import { ProblemError } from './problems.js';

/**
 * Open streams (sockets and SSE) per caller. Each stream costs memory and a share of every
 * event's fan-out; without a bound one token or key could open thousands. Counted per instance.
 */
export class ConnectionLimiter {
  private readonly open = new Map<string, number>();

  constructor(readonly max: number) {}

  /** Takes a slot for the caller; returns its release (safe to call twice), or undefined at the limit. */
  acquire(caller: string): (() => void) | undefined {
    const n = this.open.get(caller) ?? 0;
    if (n >= this.max) return undefined;
    this.open.set(caller, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.open.get(caller) ?? 1) - 1;
      if (left > 0) this.open.set(caller, left);
      else this.open.delete(caller);
    };
  }

  refusal(): ProblemError {
    return new ProblemError(429, 'too-many-connections', `at most ${this.max} open streams (sockets and SSE) per caller; close one first`);
  }
}
