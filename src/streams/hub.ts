import type { Kysely } from 'kysely';
import type { Principal } from '../auth/principal.js';
import type { DB } from '../db/schema.js';
import { prepared, type Rider, type Run } from '../db/flight.js';
import { decodeCursor, type Position } from '../events/cursor.js';
import { ProblemError } from '../http/problems.js';
import type { StreamedEvent } from './protocol.js';
import { cursorOf, pageOf, positionOf, readHead, readLog, readLogQuery, type LogPage } from './log-reader.js';
import type { TailRead } from '../observability/metrics.js';
import type { Notifier } from './notifier.js';
import { inTopic, topicName, visibleTo, type StreamEvent, type Topic } from './topics.js';


/** Where a subscription's events go: a socket or an SSE response. */
export interface Sink {
  /** Sends one event; false when the consumer is too far behind (the subscription then closes). */
  deliver(e: StreamedEvent): boolean;
  /** Ends the subscription for the given reason (slow consumer, shutdown). */
  close(reason: string): void;
  /**
   * For sinks that can share one encoding of an event with the other subscribers of its topic
   * (sockets): whether this consumer can take one more (false: too slow), and its address for
   * the hub's broadcaster. Live events then go out once per topic, not once per subscriber.
   */
  shared?: { id: string; ready(): boolean };
}

const SLOW_CONSUMER = 'slow consumer: the client is not reading; resume with the last cursor';

/**
 * A shared sink's readiness (its queued bytes: a walk through the socket, its Engine.IO buffer,
 * ws and TCP) is read once every this many live deliveries, not on each: at the held rate the
 * reads cost a tenth of the service's thread (profile, BENCHMARKS.md change 74). A consumer that
 * stops reading can then queue at most READY_CHECK_EVERY - 1 events beyond the guard's limits.
 */
const READY_CHECK_EVERY = 8;

/** The subscriptions of one topic: every one of them follows the same topic. */
class Followers extends Set<Subscription> {
  constructor(readonly topic: Topic) {
    super();
  }
}

/** Sends one event to many shared sinks at once (Socket.IO: encoded once, written to each socket). */
export type Broadcaster = (ids: string[], e: StreamedEvent) => void;

export interface HubOptions {
  /** The safety-net poll, for a lost notification (ms). */
  pollMs: number;
  /** Events read per query by the tail and by a replay. */
  batchSize: number;
  /** Live events a subscription may hold while it replays history, before it is closed as too slow. */
  maxReplayBuffer: number;
}

export class Subscription {
  live = false;
  closed = false;
  buffer: StreamEvent[] = [];
  /** Without a cursor: starts at the head of the log when it opens, not where this instance's tail is. */
  fromNow = false;
  /** With a cursor: the log after it is replayed before going live. */
  replays = false;
  /** Live deliveries to a shared sink until its readiness is read again (READY_CHECK_EVERY). */
  untilReadyCheck = 0;

  constructor(
    readonly topic: Topic,
    readonly principal: Principal,
    readonly sink: Sink,
    /** The cursor of the last event delivered; nothing at or before it is sent again. */
    public last: string,
  ) {}
}

/**
 * One per instance: tails the event log from Postgres and fans what it reads out to this
 * instance's subscribers. Correctness never rests on memory: a subscriber that resumes reads
 * its history from the log, then switches to the tail with no gap (its replay reads everything
 * below the horizon) and no repeat (nothing at or before its last cursor is delivered).
 */
export class StreamHub {
  private byTopic = new Map<string, Followers>();
  private position: Position | undefined;
  private running = false;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private retry: NodeJS.Timeout | undefined;
  private retryDelay = 0;
  private stopped = false;
  /**
   * Set when the tail was woken with no one subscribed and skipped the read: nothing needs the
   * events, and an instance that only takes writes (factory traffic) then spends no statement on
   * its own commits. The first subscription after moves the tail to the head (leaveIdle).
   */
  private idle = false;
  /** The last page read was full: more of the log waits to be read. */
  private behind = false;
  /** The move of leaveIdle in progress, shared by the subscriptions that wait for it. */
  private leaving: Promise<void> | undefined;
  /** Whether the tail knows where the log ends; until then no stream can start. */
  ready = false;
  /** Events read by the tail since start, for metrics and benchmarks. */
  delivered = 0;
  read = 0;
  /** The tail's reads since start: behind an append's commit (ride), or alone. */
  reads: Record<TailRead, number> = { behind_commit: 0, alone: 0 };

  /** Set by a transport whose sinks are `shared` (the socket server). */
  broadcast: Broadcaster | undefined;

  constructor(
    private readonly db: Kysely<DB>,
    private readonly notifier: Notifier,
    private readonly opts: HubOptions,
    private readonly onError: (err: unknown) => void,
    /** Runs the tail's reads (prepared statements: db/flight.ts preparedRunner); Kysely's by default. */
    private readonly run?: Run,
  ) {}

  /**
   * Finds the head of the log and starts tailing. A database that is away or not yet migrated
   * does not stop the service from starting: the tail keeps trying, and streams answer 503 until
   * it has found its place.
   */
  async start(): Promise<void> {
    this.notifier.on('events', () => this.wake());
    this.notifier.carryTail(() => this.ride());
    this.timer = setInterval(() => this.wake(), this.opts.pollMs);
    this.timer.unref();
    await this.findHead().catch((err) => {
      this.onError(err);
      this.scheduleRetry();
    });
  }

  private async findHead(): Promise<void> {
    if (this.ready) return;
    this.position = (await readHead(this.db, this.run)).head;
    this.ready = true;
  }

  /** The cursor of the last event this instance's tail has read: where a live stream starts. */
  get cursor(): string {
    return cursorOf(this.position);
  }

  get subscriptions(): number {
    let n = 0;
    for (const set of this.byTopic.values()) n += set.size;
    return n;
  }

  /** Reads everything new and dispatches it; one run at a time, re-run if woken meanwhile. */
  wake(): void {
    if (this.stopped) return;
    if (this.ready && (this.idle || !this.byTopic.size)) {
      this.idle = true; // until a subscription comes (leaveIdle)
      return;
    }
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.drain()
      .catch((err) => {
        this.onError(err);
        this.scheduleRetry(); // the database may be away: keep trying, with backoff
      })
      .finally(() => {
        this.running = false;
        if (this.again) {
          this.again = false;
          this.wake();
        }
      });
  }

  /**
   * The tail's next read, for a writer to send right behind its commit (db/flight.ts Rider): its
   * rows come back with the commit, a round trip sooner than a read sent once the commit is
   * known. It may overlap a read of the tail's own: every read of the log is a prefix, in cursor
   * order, of what lies after its start below its horizon, and nothing is sent to a subscriber at
   * or before its last cursor, so pages dispatched in either order deliver each event once, in
   * order (test/streams-resume.test.ts races writers against subscribers across instances).
   */
  private ride(): Rider | undefined {
    // While the tail works through a backlog a page at a time, a ride would read its current page again.
    if (this.stopped || !this.ready || this.idle || this.behind || !this.byTopic.size) return undefined;
    return {
      query: prepared(readLogQuery(this.db, { after: this.position, limit: this.opts.batchSize })),
      take: (rows) => {
        try {
          const page = pageOf(rows);
          this.reads.behind_commit++;
          this.deliver(page);
          // Empty (held back behind an older transaction) or full: the tail takes it from here.
          if (!page.length || page.length >= this.opts.batchSize) this.wake();
          else if (page.heldBack) this.scheduleRetry();
        } catch (err) {
          this.onError(err);
          this.wake();
        }
      },
      drop: () => this.wake(),
    };
  }

  /** Reads everything below the horizon after the tail's position, a page at a time. */
  private async drain(): Promise<void> {
    if (!this.ready) return this.findHead();
    let heldBack: boolean | undefined;
    for (;;) {
      const batch = await readLog(this.db, { after: this.position, limit: this.opts.batchSize }, this.run);
      this.reads.alone++;
      this.deliver(batch);
      heldBack = batch.heldBack;
      if (batch.length < this.opts.batchSize) break;
    }
    // Committed events may wait above the horizon behind a transaction still running (one that
    // will not notify, if it aborts or appends nothing): look again soon rather than at the poll.
    // The wait grows only while nothing moves, so a busy log is read again within milliseconds.
    heldBack ??= (await readHead(this.db, this.run)).heldBack;
    if (heldBack) this.scheduleRetry();
    else this.retryDelay = 0;
  }

  /** Dispatches a page of the log and moves the tail's position past it. */
  private deliver(page: LogPage) {
    this.behind = page.length >= this.opts.batchSize;
    for (const e of page) this.dispatch(e);
    if (!page.length) return;
    const last = positionOf(page.at(-1)!);
    if (cursorOf(last) > this.cursor) this.position = last; // never behind where leaveIdle or another read moved it
    this.read += page.length;
    this.retryDelay = 0;
    clearTimeout(this.retry); // a long wait scheduled while the log stood still
    this.retry = undefined;
  }

  private scheduleRetry() {
    if (this.retry || this.stopped) return;
    this.retryDelay = Math.min(1000, Math.max(5, this.retryDelay * 2));
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.wake();
    }, this.retryDelay);
    this.retry.unref();
  }

  private dispatch(e: StreamEvent) {
    const keys = ['all', `order:${e.event.orderId}`, `customer:${e.customerId}`, ...e.factoryIds.map((f) => `factory:${f}`)];
    if (e.event.factoryId && !e.factoryIds.includes(e.event.factoryId)) keys.push(`factory:${e.event.factoryId}`);
    for (const key of keys) {
      const subs = this.byTopic.get(key);
      // The topic is the same for all its subscriptions: whether the event is in it is asked once.
      if (!subs || !inTopic(subs.topic, e)) continue;
      const together: string[] = [];
      for (const sub of subs) this.offer(sub, e, together);
      // Every subscriber of one topic gets the same message: encode it once for all of them.
      if (together.length) this.broadcast!(together, { ...e.event, topic: key });
    }
  }

  /** Hands `e` (in `sub`'s topic) to `sub`: buffered while it replays, else sent (a shared sink's into `together`). */
  private offer(sub: Subscription, e: StreamEvent, together: string[]) {
    if (sub.closed || !visibleTo(sub.principal, e)) return;
    if (!sub.live) {
      // Two reads of the tail may overlap (ride): what a page repeats of the one before is not kept twice.
      const newest = sub.buffer.at(-1);
      if (newest && e.event.cursor <= newest.event.cursor) return;
      sub.buffer.push(e);
      if (sub.buffer.length > this.opts.maxReplayBuffer) this.drop(sub, 'slow consumer: too far behind while catching up; resume with the last cursor');
      return;
    }
    this.send(sub, e, together);
  }

  /**
   * Sends `e` unless `sub` has it already. With `together`, a shared sink only joins the list the
   * caller broadcasts to; without (replays, the buffer flushed on going live), each sink delivers.
   */
  private send(sub: Subscription, e: StreamEvent, together?: string[]) {
    if (e.event.cursor <= sub.last) return;
    const shared = together && this.broadcast ? sub.sink.shared : undefined;
    if (shared && --sub.untilReadyCheck <= 0) {
      sub.untilReadyCheck = READY_CHECK_EVERY;
      if (!shared.ready()) return this.drop(sub, SLOW_CONSUMER);
    }
    sub.last = e.event.cursor;
    this.delivered++;
    if (shared) together!.push(shared.id);
    else if (!sub.sink.deliver({ ...e.event, topic: topicName(sub.topic) })) this.drop(sub, SLOW_CONSUMER);
  }

  /**
   * Registers a subscription; catchUp() must follow. With `after` it buffers live events until
   * catchUp() has replayed the log after that cursor. Without, catchUp() moves its start to the
   * head of the log: the tail may not have read yet what committed just before the subscriber
   * came (the order it just created, say), and those are not "live events from now".
   */
  open(topic: Topic, principal: Principal, sink: Sink, after?: string): Subscription {
    this.assertReady();
    const sub = new Subscription(topic, principal, sink, after ?? this.cursor);
    const key = topicName(topic);
    let set = this.byTopic.get(key);
    if (!set) this.byTopic.set(key, (set = new Followers(topic)));
    set.add(sub);
    sub.fromNow = after === undefined;
    sub.replays = after !== undefined;
    return sub;
  }

  /** Refuses a stream while the tail has not found the head of the log (database away at start). */
  assertReady(): void {
    if (!this.ready) {
      throw new ProblemError(503, 'streams-unavailable', 'the event log cannot be read yet; retry shortly', { headers: { 'retry-after': '2' } });
    }
  }

  /**
   * After idling, moves the tail to the head of the log before any subscription replays or goes
   * live: no one was subscribed, so no one misses what it skips, and a replay then reads up to
   * the new position while the tail delivers after it. Subscriptions that come together share one
   * move. The tail never goes back past a position it moved to (the dispatch dedupes by cursor).
   */
  private leaveIdle(): Promise<void> {
    if (!this.idle) return Promise.resolve();
    this.leaving ??= readHead(this.db, this.run)
      .then(({ head }) => {
        if (head && cursorOf(head) > this.cursor) this.position = head;
        this.idle = false; // if the read failed, the next subscription tries again
      })
      .finally(() => {
        this.leaving = undefined;
        this.wake();
      });
    return this.leaving;
  }

  /** Replays the log after the subscription's cursor, then takes what the tail buffered meanwhile and goes live. */
  async catchUp(sub: Subscription): Promise<void> {
    if (sub.live) return;
    try {
      await this.leaveIdle();
      if (!sub.replays) {
        await this.startFromHead(sub);
        return this.goLive(sub);
      }
      for (;;) {
        const page = await readLog(this.db, {
          after: decodeCursor(sub.last),
          upTo: this.position,
          topic: sub.topic,
          principal: sub.principal,
          limit: this.opts.batchSize,
          routing: false,
        });
        for (const e of page) {
          if (sub.closed) return;
          this.send(sub, e);
        }
        if (page.length < this.opts.batchSize) break;
      }
      this.goLive(sub);
    } catch (err) {
      this.drop(sub, 'the replay failed; resume with the last cursor');
      throw err;
    }
  }

  /**
   * Without a cursor: moves the subscription's start to the head of the log (see open). A
   * transport that tells the client where its stream starts calls this first, then catchUp().
   */
  async startFromHead(sub: Subscription): Promise<void> {
    if (!sub.fromNow) return;
    await this.leaveIdle();
    const { head } = await readHead(this.db);
    if (head && cursorOf(head) > sub.last) sub.last = cursorOf(head);
    sub.fromNow = false;
  }

  /** In one turn of the event loop: flush what the tail dispatched meanwhile (nothing at or before `last`), then go live. */
  private goLive(sub: Subscription) {
    for (const e of sub.buffer) if (!sub.closed) this.send(sub, e);
    sub.buffer = [];
    sub.live = true;
  }

  unsubscribe(sub: Subscription) {
    sub.closed = true;
    const key = topicName(sub.topic);
    const set = this.byTopic.get(key);
    set?.delete(sub);
    if (set && !set.size) this.byTopic.delete(key);
  }

  private drop(sub: Subscription, reason: string) {
    if (sub.closed) return;
    this.unsubscribe(sub);
    sub.sink.close(reason);
  }

  /** Stops the tail; open subscriptions are closed by their transports. */
  stop() {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.retry);
  }
}
