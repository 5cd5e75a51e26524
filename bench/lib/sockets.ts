import { io, type Socket } from 'socket.io-client';
import { nowMs } from './stats.js';

export interface Keep {
  recorded?: boolean;
  ids?: boolean;
}

/** What a bench socket received: latencies of stamped events (ms) and a count of every event. */
export class Receipts {
  /** Send → receipt, of events stamped by their sender (a note whose text is the send time). */
  latencies: number[] = [];
  /**
   * Recorded → receipt, of the service's events: `recordedAt` is Postgres's now(), the start of
   * the transaction that appended the event, written to the millisecond (rounded down). So each
   * is commit → receipt plus the transaction's own time plus under a millisecond: an upper bound
   * that leaves out the HTTP request and its wait for a group, as send → receipt does not.
   * Postgres and this process read the same clock (one machine).
   */
  fromRecorded: number[] = [];
  /**
   * Each kept receipt's event id and time (the fixed rate's), matched after the run against the
   * commit timestamps Postgres kept for them (`commitToReceipt`): the figure the issue names.
   */
  ids: string[] = [];
  at: number[] = [];
  count = 0;
  recording = false;
  /** What is kept beside the send times: fromRecorded (the service's runs), ids and times (the fixed rate's). */
  keep: Keep = {};

  take(text: unknown, recordedAt?: unknown, id?: unknown) {
    this.count++;
    if (!this.recording) return;
    const now = nowMs();
    const sent = Number(text);
    if (Number.isFinite(sent) && sent > 0) this.latencies.push(now - sent);
    if (!this.keep.recorded) return;
    const recorded = typeof recordedAt === 'string' ? Date.parse(recordedAt) : NaN;
    if (Number.isFinite(recorded)) this.fromRecorded.push(now - recorded);
    if (this.keep.ids && typeof id === 'string') {
      this.ids.push(id);
      this.at.push(now);
    }
  }

  /** Commit → receipt of each kept receipt whose event's commit time `committed` has (ms, the same clock). */
  commitToReceipt(committed: Map<string, number>): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.ids.length; i++) {
      const c = committed.get(this.ids[i]!);
      if (c !== undefined) out.push(this.at[i]! - c);
    }
    return out;
  }

  reset(recording: boolean, keep: Keep = {}) {
    this.latencies = [];
    this.fromRecorded = [];
    this.ids = [];
    this.at = [];
    this.count = 0;
    this.recording = recording;
    this.keep = keep;
  }
}

/** One WebSocket connection of its own (forceNew: no multiplexing of sockets over one). */
export function connect(url: string, auth: Record<string, string> | undefined, path = '/socket.io'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = io(url, { path, auth, transports: ['websocket'], forceNew: true, reconnection: false });
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (err) => reject(err));
  });
}

/** Connects many sockets, a few at a time (a thousand handshakes at once would only queue). */
export async function connectMany<T>(items: T[], open: (item: T) => Promise<Socket>, onProgress?: (done: number) => void): Promise<Socket[]> {
  const out: Socket[] = new Array(items.length);
  let next = 0;
  let done = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await open(items[i]!);
        onProgress?.(++done);
      }
    }),
  );
  return out;
}

export function closeAll(sockets: Socket[]) {
  for (const s of sockets) s.disconnect();
}
