import type { Kysely } from 'kysely';
import type { Principal } from '../auth/principal.js';
import type { DB } from '../db/schema.js';
import type { Notifier } from './notifier.js';

type Close = (reason: string) => void;

const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Long-lived connections (sockets, SSE) and the credentials they were opened with. A token is
 * closed at its expiry; a revoked key closes every connection opened with it, on every instance
 * (a notification, and a periodic check of the database in case one was missed).
 */
export class ConnectionRegistry {
  private byKey = new Map<string, Set<Close>>();
  private timer: NodeJS.Timeout;

  constructor(
    private readonly db: Kysely<DB>,
    notifier: Notifier,
    private readonly onError: (err: unknown) => void,
    checkEveryMs = 5000,
  ) {
    notifier.on('revoked', (keyId) => this.revoke(keyId));
    this.timer = setInterval(() => void this.checkRevocations().catch(onError), checkEveryMs);
    this.timer.unref();
  }

  get size(): number {
    let n = 0;
    for (const s of this.byKey.values()) n += s.size;
    return n;
  }

  /** Tracks a connection; returns the function to call when it ends by itself. */
  register(p: Principal, close: Close): () => void {
    let expiry: NodeJS.Timeout | undefined;
    if (p.role !== 'factory') {
      const arm = () => {
        const left = p.expiresAt.getTime() - Date.now();
        if (left <= 0) return close('token expired');
        expiry = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
        expiry.unref();
      };
      arm();
      return () => clearTimeout(expiry);
    }
    let set = this.byKey.get(p.keyId);
    if (!set) this.byKey.set(p.keyId, (set = new Set()));
    set.add(close);
    return () => {
      set.delete(close);
      if (!set.size) this.byKey.delete(p.keyId);
    };
  }

  revoke(keyId: string) {
    const set = this.byKey.get(keyId);
    if (!set) return;
    this.byKey.delete(keyId);
    for (const close of set) close('API key revoked');
  }

  private async checkRevocations() {
    const ids = [...this.byKey.keys()];
    if (!ids.length) return;
    const revoked = await this.db.selectFrom('api_keys').select('id').where('id', 'in', ids).where('revoked_at', 'is not', null).execute();
    for (const r of revoked) this.revoke(r.id);
  }

  stop() {
    clearInterval(this.timer);
  }
}
