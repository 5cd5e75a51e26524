import { appendItems, type AppendItem, type AppendObserver, type AppendResult, type Writer } from './service.js';

interface Waiting {
  item: AppendItem;
  resolve(r: AppendResult): void;
  reject(err: unknown): void;
}

/**
 * Group commit for single updates: updates that arrive while an earlier transaction is being
 * written wait and go together in the next one, each judged and answered as if it were alone
 * (see appendItems). An idle service writes an update at once, so nothing waits that did not have
 * to; under load one transaction, one round trip and one commit serve many callers, where each
 * statement and each commit would otherwise be paid per update. Every update is still answered
 * only once its transaction has committed.
 *
 * One transaction at a time makes the largest groups: against two, the service spent 1.7-1.9 ms
 * of CPU per update instead of 2.1 and Postgres 1.0 instead of 1.3 (quick ingest.single,
 * BENCHMARKS.md). But a transaction that waits (for an order another writer holds locked) must
 * not stall every other order behind it: when every running transaction has been running for
 * `stallMs`, the next group starts beside them, up to `lanes` at once.
 */
export class AppendQueue {
  private waiting: Waiting[] = [];
  /** When each transaction in flight started. */
  private running = new Set<{ started: number }>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly writer: Writer,
    private readonly observer: AppendObserver | undefined,
    /** Transactions of grouped updates in flight at once, at most. */
    private readonly lanes = 4,
    /** How long the running transactions must have run before another starts beside them. */
    private readonly stallMs = 50,
    /** Updates per transaction at most. */
    private readonly maxGroup = 100,
  ) {}

  append(item: AppendItem): Promise<AppendResult> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      this.pump();
    });
  }

  private pump() {
    while (this.waiting.length && this.running.size < this.lanes) {
      let youngest = -Infinity;
      for (const r of this.running) youngest = Math.max(youngest, r.started);
      const waited = performance.now() - youngest;
      if (waited < this.stallMs) {
        this.timer ??= setTimeout(() => {
          this.timer = undefined;
          this.pump();
        }, this.stallMs - waited);
        return;
      }
      this.start(this.waiting.splice(0, this.maxGroup));
    }
  }

  private start(group: Waiting[]) {
    const run = { started: performance.now() };
    this.running.add(run);
    appendItems(
      this.writer,
      group.map((w) => w.item),
      this.observer,
    )
      .then(
        (results) => group.forEach((w, i) => w.resolve(results[i]!)),
        (err) => group.forEach((w) => w.reject(err)),
      )
      .finally(() => {
        this.running.delete(run);
        this.pump();
      });
  }
}
