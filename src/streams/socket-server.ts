import type { FastifyInstance } from 'fastify';
import { Server, type Socket } from 'socket.io';
import type { Principal } from '../auth/principal.js';
import { decodeCursor } from '../events/cursor.js';
import { ProblemError } from '../http/problems.js';
import type { ConnectionRegistry } from './connections.js';
import type { StreamHub, Subscription } from './hub.js';
import {
  subscribePayload,
  unsubscribePayload,
  type AckError,
  type ClientToServerEvents,
  type ServerToClientEvents,
} from './protocol.js';
import { SlowConsumerGuard } from './slow-consumer.js';
import { authorizeTopic, parseTopic, topicError, topicName } from './topics.js';
import { writeBurstsTogether } from './write-bursts.js';

export interface SocketLimits {
  maxTopicsPerSocket: number;
  maxPayloadBytes: number;
  /** Bytes queued to one socket beyond which it is disconnected as a slow consumer. */
  maxBufferedBytes: number;
}

interface SocketData {
  principal: Principal;
  subs: Map<string, Subscription>;
  release: () => void;
  guard: SlowConsumerGuard;
}

type V1Socket = Socket<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;

const ackError = (err: unknown): AckError => {
  if (err instanceof ProblemError) return { status: err.status, title: err.toProblem().title, detail: err.message };
  return { status: 500, title: 'Internal Server Error', detail: 'the subscription failed; retry' };
};

/** Bytes waiting to be written to the socket: engine.io's queue plus the WebSocket's. */
function queuedBytes(socket: V1Socket): number {
  const conn = socket.conn as unknown as {
    writeBuffer?: Array<{ data?: unknown }>;
    transport?: { socket?: { bufferedAmount?: number; _socket?: { writableLength?: number } } };
  };
  const ws = conn.transport?.socket;
  let bytes = (ws?.bufferedAmount ?? 0) + (ws?._socket?.writableLength ?? 0);
  for (const packet of conn.writeBuffer ?? []) bytes += typeof packet.data === 'string' ? packet.data.length : 64;
  return bytes;
}

/** Socket.IO on the service's own port: path /socket.io, namespace /v1. */
export function attachSocketServer(
  app: FastifyInstance,
  hub: StreamHub,
  registry: ConnectionRegistry,
  limits: SocketLimits,
): Server<ClientToServerEvents, ServerToClientEvents> {
  writeBurstsTogether();
  const io = new Server<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>(app.server, {
    path: '/socket.io',
    maxHttpBufferSize: limits.maxPayloadBytes,
    serveClient: false,
  });
  // Every socket would keep its HTTP upgrade request (headers, parser state) for its whole life:
  // nothing reads it after the handshake (credentials come in the CONNECT packet), so let it go.
  // Socket.IO builds the handshake without it. Engine.IO still holds the request itself until the
  // connection closes (a close listener of its upgrade), so its headers are emptied too: 700 bytes
  // less per idle socket (heap snapshots around 1,000 subscribed sockets, BENCHMARKS.md).
  io.engine.on('connection', (raw: { request: { rawHeaders: string[]; headers: object; _query?: object } | null }) => {
    if (raw.request) {
      raw.request.rawHeaders = [];
      raw.request.headers = {};
      raw.request._query = {};
    }
    raw.request = null;
  });
  const nsp = io.of('/v1');
  // Live events go out once per topic: Socket.IO encodes the message once and writes it to each
  // socket (every socket is in the room of its own id).
  hub.broadcast = (ids, e) => nsp.to(ids).emit('event', e);

  nsp.use(async (socket, next) => {
    const auth = (socket.handshake.auth ?? {}) as Record<string, unknown>;
    const token = typeof auth.token === 'string' ? auth.token : undefined;
    const apiKey = typeof auth.apiKey === 'string' ? auth.apiKey : undefined;
    try {
      if (token === undefined && apiKey === undefined) throw new ProblemError(401, 'unauthorized', 'auth.token (JWT) or auth.apiKey required');
      socket.data.principal = await app.authenticate({ bearer: token, apiKey });
      next();
    } catch (err) {
      const problem = err instanceof ProblemError ? err : new ProblemError(503, 'unavailable', 'authentication unavailable; retry');
      const e = new Error(problem.message) as Error & { data?: AckError };
      e.data = { status: problem.status, title: problem.toProblem().title, detail: problem.message };
      next(e);
    }
  });

  nsp.on('connection', (socket: V1Socket) => {
    const data = socket.data;
    data.subs = new Map();
    data.guard = new SlowConsumerGuard(limits.maxBufferedBytes);
    const close = (reason: string) => {
      socket.emit('closing', { reason });
      socket.disconnect(true);
    };
    data.release = registry.register(data.principal, close);

    socket.on('subscribe', async (payload, ack) => {
      if (typeof ack !== 'function') return; // the protocol needs an ack: nothing to answer to
      try {
        const parsed = subscribePayload.safeParse(payload);
        if (!parsed.success) throw new ProblemError(400, 'invalid-payload', 'subscribe takes {topic, after?}');
        const topic = parseTopic(parsed.data.topic);
        if (!topic) throw topicError();
        const after = parsed.data.after;
        if (after !== undefined && !decodeCursor(after)) throw new ProblemError(400, 'invalid-cursor', 'after must be a cursor from an event');
        const name = topicName(topic);
        if (data.subs.has(name)) throw new ProblemError(409, 'already-subscribed', `already subscribed to ${name}`);
        if (data.subs.size >= limits.maxTopicsPerSocket) {
          throw new ProblemError(429, 'too-many-topics', `at most ${limits.maxTopicsPerSocket} topics per socket`);
        }
        await authorizeTopic(app.database.db, data.principal, topic);
        if (socket.disconnected) return;
        const guard = data.guard;
        const sub = hub.open(
          topic,
          data.principal,
          {
            deliver: (e) => {
              if (socket.disconnected) return true;
              if (!guard.ok(queuedBytes(socket))) return false;
              socket.emit('event', e);
              return true;
            },
            shared: { id: socket.id, ready: () => socket.disconnected || guard.ok(queuedBytes(socket)) },
            close,
          },
          after,
        );
        data.subs.set(name, sub);
        // The ack's cursor is where the stream starts: without after, the head of the log now.
        await hub.startFromHead(sub).catch((err) => {
          hub.unsubscribe(sub);
          data.subs.delete(name);
          throw err;
        });
        // The ack goes first; the replay (with after) and then the live events follow it in order.
        ack({ ok: true, topic: name, cursor: sub.last });
        await hub.catchUp(sub).catch((err) => app.log.warn({ err, topic: name }, 'replay failed; socket closed'));
      } catch (err) {
        ack({ ok: false, error: ackError(err) });
      }
    });

    socket.on('unsubscribe', (payload, ack) => {
      if (typeof ack !== 'function') return;
      const parsed = unsubscribePayload.safeParse(payload);
      const topic = parsed.success ? parseTopic(parsed.data.topic) : undefined;
      if (!topic) return ack({ ok: false, error: ackError(topicError()) });
      const name = topicName(topic);
      const sub = data.subs.get(name);
      if (!sub) return ack({ ok: false, error: { status: 404, title: 'Not Found', detail: `not subscribed to ${name}` } });
      hub.unsubscribe(sub);
      data.subs.delete(name);
      ack({ ok: true, topic: name });
    });

    socket.on('disconnect', () => {
      for (const sub of data.subs.values()) hub.unsubscribe(sub);
      data.subs.clear();
      data.release();
    });
  });

  return io;
}
