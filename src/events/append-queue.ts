import { appendItems, type AppendItem, type AppendObserver, type AppendResult, type Writer } from './service.js';

interface Waiting {
  item: AppendItem;
  resolve(r: AppendResult): void;
  reject(err: unknown): void;
}

/**
 * Group commit for single updates: updates that arrive while earlier ones are being written wait
 * and go together in the next transaction, each judged and answered as if it were alone (see
 * appendItems). An idle service writes an update at once, so nothing waits that did not have to;
 * under load one transaction, one set of round trips and one commit serve many callers, where
 * each statement and each commit would otherwise be paid per update. Every update is still
 * answered only once its transaction has committed.
 */
export class AppendQueue {
  private waiting: Waiting[] = [];
  private inFlight = 0;

  constructor(
    private readonly writer: Writer,
    private readonly observer: AppendObserver | undefined,
    /** Transactions of grouped updates in flight at once. */
    private readonly concurrency = 2,
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
    while (this.waiting.length && this.inFlight < this.concurrency) {
      const group = this.waiting.splice(0, this.maxGroup);
      this.inFlight++;
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
          this.inFlight--;
          this.pump();
        });
    }
  }
}
