import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { CompiledQuery } from 'kysely';
import pg from 'pg';
import type { Database } from '../db/database.js';
import { prepared, type Rider } from '../db/flight.js';

/** The channel every instance listens on: `e` = events appended, `r:<keyId>` = API key revoked. */
export const CHANNEL = 'orderstream';

/**
 * How a writer of events announces them: on a real Postgres it sends `query` (a NOTIFY) inside its
 * own transaction, so the other instances hear of the events at its commit and no transaction is
 * paid for the NOTIFY alone; after the commit it calls `committed()`, which wakes this instance's
 * tails. On the embedded database there is no other instance, and no query.
 */
export interface Announcement {
  query?: CompiledQuery;
  /**
   * This instance's tail's next read, to send right behind the commit (db/flight.ts Rider), when
   * there is a real Postgres and the tail is free to take it; undefined otherwise.
   */
  ride(): Rider | undefined;
  /** After the commit; `rode`: the tail's read went behind it, so the tail need not be woken. */
  committed(rode: boolean): void;
}

/** How the other instances were told of appended events: a NOTIFY of its own, or inside the append's transaction. */
export type NotifyWay = 'alone' | 'carried';

export interface Notifier {
  /** Called after a commit that appended events: wakes every instance's tailer (coalesced). */
  eventsAppended(): void;
  /** For writers that append in a transaction of their own, instead of eventsAppended(). */
  readonly announcement: Announcement;
  /** Where the announcement's rides come from: this instance's tail (streams/hub.ts). */
  carryTail(next: () => Rider | undefined): void;
  /** Called after a key was revoked: every instance closes that key's sockets and streams. */
  keyRevoked(keyId: string): void;
  /** Whether this instance hears every other instance now (always, on the embedded database). */
  listening(): boolean;
  on(event: 'events', listener: () => void): void;
  on(event: 'revoked', listener: (keyId: string) => void): void;
  /** Listening again after a gap: whatever was heard of before may have changed unheard. */
  on(event: 'resync', listener: () => void): void;
  close(): Promise<void>;
}

/**
 * Cross-instance wake-ups through Postgres LISTEN/NOTIFY. The event writers carry the NOTIFY in
 * their own transaction (`announcement`): they commit one at a time (events/append-queue.ts), so
 * the lock a NOTIFY holds through its commit serialises nothing that was not serial already, and
 * a separate NOTIFY would cost a transaction, a round trip and a WAL flush of its own. Other
 * writers (orders created, alerts) send it after their commit: while one such NOTIFY is in
 * flight, further ones only set a flag, so a burst costs one or two notifications. Local
 * listeners are woken at once, without a round trip. On the embedded database the service is one
 * process, so the local path is all there is.
 */
export async function createNotifier(
  database: Database,
  onError: (err: unknown) => void,
  counted: (way: NotifyWay) => void = () => undefined,
): Promise<Notifier> {
  const local = new EventEmitter();
  local.setMaxListeners(0);
  let closed = false;
  let listener: pg.Client | undefined;
  let inFlight = false;
  let again = false;

  const pool = database.pool;
  const send = (payload: string) => pool!.query('select pg_notify($1, $2)', [CHANNEL, payload]);
  // Appends are announced with this instance's name: its own LISTEN hears them too, and its
  // tail was woken already (a second read of the log per burst, for nothing).
  const self = `e:${randomUUID()}`;

  function flushEvents() {
    if (!pool || closed) return;
    if (inFlight) {
      again = true;
      return;
    }
    inFlight = true;
    counted('alone');
    send(self)
      .catch(onError)
      .finally(() => {
        inFlight = false;
        if (again) {
          again = false;
          flushEvents();
        }
      });
  }

  async function listen(delayMs = 0): Promise<void> {
    if (!pool || closed) return;
    if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
    const client = new pg.Client({ connectionString: database.url });
    client.on('notification', (msg) => {
      if (msg.payload === self) return;
      if (msg.payload === 'e' || msg.payload?.startsWith('e:')) local.emit('events');
      else if (msg.payload?.startsWith('r:')) local.emit('revoked', msg.payload.slice(2));
    });
    client.on('error', (err) => {
      onError(err);
      if (listener === client) listener = undefined;
      client.end().catch(() => undefined);
      // Lost the LISTEN connection: reconnect; the tailers' slow poll covers the gap meanwhile.
      void listen(Math.min(5000, Math.max(250, delayMs * 2)));
    });
    try {
      await client.connect();
      await client.query(`listen ${CHANNEL}`);
      client.on('end', () => {
        if (listener === client) listener = undefined;
      });
      listener = client;
      local.emit('resync');
      local.emit('events'); // whatever was missed while not listening
    } catch (err) {
      onError(err);
      await client.end().catch(() => undefined);
      void listen(Math.min(5000, Math.max(250, delayMs * 2)));
    }
  }
  await listen();

  const query = pool ? prepared(CompiledQuery.raw('select pg_notify($1, $2)', [CHANNEL, self])) : undefined;
  let tail: (() => Rider | undefined) | undefined;
  const announcement: Announcement = {
    query,
    ride: () => (query ? tail?.() : undefined),
    committed(rode) {
      if (query) counted('carried');
      if (!rode) local.emit('events');
    },
  };

  return {
    eventsAppended() {
      local.emit('events');
      flushEvents();
    },
    announcement,
    carryTail(next) {
      tail = next;
    },
    listening: () => !pool || (listener !== undefined && !closed),
    keyRevoked(keyId) {
      local.emit('revoked', keyId);
      if (pool) send(`r:${keyId}`).catch(onError);
    },
    on(event: string, fn: Parameters<EventEmitter['on']>[1]) {
      local.on(event, fn);
    },
    async close() {
      closed = true;
      local.removeAllListeners();
      await listener?.end().catch(() => undefined);
    },
  };
}
