// Factory systems as they behave in the field, for fault tests: writers that post notes with an
// Idempotency-Key and retry the same key (on another instance) until it is acknowledged, and a
// stream follower that resumes from its last cursor. Both record everything, for the ledger check.
import { io as connect, type Socket } from 'socket.io-client';
import type { ClientToServerEvents, ServerToClientEvents, StreamedEvent, SubscribeAck } from '../../src/streams/protocol.js';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** One HTTP attempt: when it started and ended (ms, performance clock) and how it ended. */
export interface Attempt {
  start: number;
  end: number;
  status: number | 'network';
  target: string;
  /** For 503s: was it problem+json with a Retry-After? */
  wellFormed503?: boolean;
}

export interface Acked {
  key: string;
  orderId: string;
  eventId: string;
  seq: number;
}

export interface LoadOptions {
  /** Base URLs of the instances to use, asked at each attempt (a killed one is dropped by the test). */
  targets: () => string[];
  apiKey: string;
  orderIds: string[];
  writers: number;
  /** Prefix of every idempotency key and note text, unique per run. */
  prefix: string;
}

/**
 * Writers posting notes as a factory. A key is retried (same body, next instance) after a
 * network error, a 503 or a 5xx until it is acknowledged; any other refusal is recorded as unexpected.
 */
export class IngestLoad {
  readonly acked = new Map<string, Acked>();
  readonly attempts: Attempt[] = [];
  readonly unexpected: string[] = [];
  /** Every key a writer sent at least once, acknowledged or not. */
  readonly tried = new Set<string>();
  private stopping = false;
  private running: Promise<void>[] = [];

  constructor(private readonly opts: LoadOptions) {}

  start(): this {
    this.running = Array.from({ length: this.opts.writers }, (_, w) => this.writer(w));
    return this;
  }

  /** Stops issuing new keys; resolves once every key already tried has been acknowledged (or the deadline passed). */
  async stop(deadlineMs = 30_000): Promise<void> {
    this.stopping = true;
    const deadline = sleep(deadlineMs).then(() => {
      throw new Error(`writers still retrying after ${deadlineMs} ms`);
    });
    await Promise.race([Promise.all(this.running), deadline]);
  }

  /** The attempts that started within [from, to] (performance clock). */
  between(from: number, to: number): Attempt[] {
    return this.attempts.filter((a) => a.start >= from && a.start <= to);
  }

  /** The attempts in flight at some moment of [from, to]. */
  overlapping(from: number, to: number): Attempt[] {
    return this.attempts.filter((a) => a.start <= to && a.end >= from);
  }

  private async writer(w: number) {
    for (let n = 0; !this.stopping; n++) {
      const key = `${this.opts.prefix}-w${w}-${n}`;
      const orderId = this.opts.orderIds[(w + n * this.opts.writers) % this.opts.orderIds.length]!;
      this.tried.add(key);
      await this.post(key, orderId, w);
    }
  }

  private async post(key: string, orderId: string, w: number) {
    const deadline = performance.now() + 60_000;
    for (let attempt = 0; performance.now() < deadline; attempt++) {
      const targets = this.opts.targets();
      const target = targets[(w + attempt) % targets.length]!;
      const start = performance.now();
      let record: Attempt;
      try {
        const res = await fetch(`${target}/v1/orders/${orderId}/events`, {
          method: 'POST',
          headers: { 'x-api-key': this.opts.apiKey, 'content-type': 'application/json', 'idempotency-key': key },
          body: JSON.stringify({ type: 'note', text: key }),
          signal: AbortSignal.timeout(30_000),
        });
        const text = await res.text();
        record = { start, end: performance.now(), status: res.status, target };
        if (res.status === 201 || res.status === 200) {
          const e = JSON.parse(text) as { id: string; seq: number };
          this.attempts.push(record);
          const prior = this.acked.get(key);
          if (prior && prior.eventId !== e.id) this.unexpected.push(`${key}: acknowledged as ${prior.eventId} and as ${e.id}`);
          this.acked.set(key, { key, orderId, eventId: e.id, seq: e.seq });
          return;
        }
        if (res.status === 503) {
          record.wellFormed503 =
            (res.headers.get('content-type') ?? '').startsWith('application/problem+json') &&
            /^\d+$/.test(res.headers.get('retry-after') ?? '') &&
            (JSON.parse(text) as { status?: number }).status === 503;
        } else if (res.status < 500) {
          this.unexpected.push(`${key}: ${res.status} ${text.slice(0, 300)}`);
          this.attempts.push(record);
          return;
        }
      } catch {
        record = { start, end: performance.now(), status: 'network', target };
      }
      this.attempts.push(record);
      await sleep(Math.min(100 * (attempt + 1), 500));
    }
    this.unexpected.push(`${key}: never acknowledged within 60 s`);
  }
}

type ClientSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

/**
 * A socket subscriber of one topic that keeps its last cursor and, whenever its socket goes
 * away, reconnects (to the next live instance) and resubscribes after that cursor.
 */
export class StreamFollower {
  readonly events: StreamedEvent[] = [];
  readonly disconnects: Array<{ at: number; reason: string }> = [];
  readonly closing: string[] = [];
  private socket?: ClientSocket;
  private cursor?: string;
  private stopped = false;
  private subscribed = false;

  constructor(
    private readonly targets: () => string[],
    private readonly auth: { token: string } | { apiKey: string },
    private readonly topic: string,
  ) {}

  get connected(): boolean {
    return Boolean(this.socket?.connected) && this.subscribed;
  }

  /** Connects and subscribes live from now; resolves once the subscription is acknowledged. */
  async start(): Promise<void> {
    this.open(0);
    await until(() => this.connected, 15_000, `subscription to ${this.topic}`);
  }

  stop() {
    this.stopped = true;
    this.socket?.disconnect();
  }

  private open(attempt: number) {
    if (this.stopped) return;
    const targets = this.targets();
    const socket: ClientSocket = connect(`${targets[attempt % targets.length]}/v1`, {
      path: '/socket.io',
      auth: this.auth,
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
      timeout: 5000,
    });
    this.socket = socket;
    this.subscribed = false;
    const retry = () => {
      socket.removeAllListeners();
      socket.disconnect();
      setTimeout(() => this.open(attempt + 1), 200);
    };
    socket.on('connect', () => {
      const payload = this.cursor ? { topic: this.topic, after: this.cursor } : { topic: this.topic };
      socket.emit('subscribe', payload, (ack: SubscribeAck) => {
        if (!ack.ok) return retry();
        this.cursor ??= ack.cursor; // live from here: a later resume starts at this point, not at "now"
        this.subscribed = true; // e.g. 503 while the instance's tail looks for the log head
      });
    });
    socket.on('event', (e) => {
      this.events.push(e);
      this.cursor = e.cursor;
    });
    socket.on('closing', ({ reason }) => this.closing.push(reason));
    socket.on('connect_error', retry);
    socket.on('disconnect', (reason) => {
      this.disconnects.push({ at: performance.now(), reason });
      if (!this.stopped) retry();
    });
  }
}
