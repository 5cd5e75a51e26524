import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { decodeCursor } from '../events/cursor.js';
import { eventSchema } from '../events/schemas.js';
import { badRequest } from '../http/problems.js';
import type { ConnectionRegistry } from './connections.js';
import type { StreamHub } from './hub.js';
import { cursorOf, readLog } from './log-reader.js';
import { SlowConsumerGuard } from './slow-consumer.js';
import { authorizeTopic, parseTopic, topicError, type Topic } from './topics.js';

export interface StreamRouteOptions {
  hub: StreamHub;
  registry: ConnectionRegistry;
  heartbeatMs: number;
  maxBufferedBytes: number;
}

const cursorParam = z.string().max(64).optional().describe('A cursor from an event: return what came after it');

function checkCursor(text: string | undefined, path: string) {
  if (text !== undefined && !decodeCursor(text)) throw badRequest(`invalid ${path}`, [{ path, message: 'not a cursor' }]);
  return text;
}

function checkTopic(text: string): Topic {
  const topic = parseTopic(text);
  if (!topic) throw badRequest('invalid query.topic', [{ path: 'query.topic', message: topicError().message }]);
  return topic;
}

const tags = ['streams'];

export const streamRoutes: FastifyPluginAsyncZod<StreamRouteOptions> = async (app, opts) => {
  const db = app.database.db;
  // Open SSE responses, ended with a reason when the service shuts down (they would hold it open).
  const open = new Set<(reason: string) => void>();
  app.addHook('preClose', async () => {
    for (const end of open) end('server shutting down');
  });

  app.get(
    '/v1/feed',
    {
      schema: {
        tags,
        summary: 'The HTTP catch-up of a stream: events of a topic after a cursor, in cursor order',
        description:
          'Same topics and authorisation as the socket and SSE streams. Only events that can never be preceded by a later ' +
          'commit are returned, so polling with nextAfter misses nothing and repeats nothing.',
        querystring: z.strictObject({
          topic: z.string().max(100),
          after: cursorParam,
          limit: z.coerce.number().int().min(1).max(1000).default(100),
        }),
        response: { 200: z.object({ items: z.array(eventSchema), nextAfter: z.string() }) },
      },
    },
    async (req) => {
      const topic = checkTopic(req.query.topic);
      const after = checkCursor(req.query.after, 'query.after');
      await authorizeTopic(db, req.principal!, topic);
      const page = await readLog(db, { topic, principal: req.principal!, after: after ? decodeCursor(after) : undefined, limit: req.query.limit });
      const items = page.map((e) => e.event);
      return { items, nextAfter: items.at(-1)?.cursor ?? after ?? cursorOf(undefined) };
    },
  );

  app.get(
    '/v1/stream',
    {
      schema: {
        tags,
        summary: 'Server-sent events of a topic: `id:` is the cursor; resumes from Last-Event-ID or after',
        description:
          'text/event-stream. Each event is `event: event` with the Event as JSON data; comments keep proxies open; ' +
          'an `event: closing` says why the server ends the stream (token expired, key revoked, slow consumer, shutdown).',
        querystring: z.strictObject({ topic: z.string().max(100), after: cursorParam }),
        headers: z.looseObject({ 'last-event-id': z.string().max(64).optional() }),
        produces: ['text/event-stream'],
      },
    },
    async (req, reply) => {
      const topic = checkTopic(req.query.topic);
      const after = checkCursor(req.headers['last-event-id'], 'headers.last-event-id') ?? checkCursor(req.query.after, 'query.after');
      const principal = req.principal!;
      await authorizeTopic(db, principal, topic);
      opts.hub.assertReady();

      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
        'x-request-id': req.id,
      });
      res.write(`retry: 2000\n: subscribed\n\n`);
      let ended = false;
      const end = (reason?: string) => {
        if (ended) return;
        ended = true;
        if (reason) res.write(`event: closing\ndata: ${JSON.stringify({ reason })}\n\n`);
        res.end();
      };
      const guard = new SlowConsumerGuard(opts.maxBufferedBytes);
      const sub = opts.hub.open(
        topic,
        principal,
        {
          deliver: (e) => {
            if (ended) return true;
            if (!guard.ok(res.writableLength)) return false;
            res.write(`id: ${e.cursor}\nevent: event\ndata: ${JSON.stringify(e)}\n\n`);
            return true;
          },
          close: end,
        },
        after,
      );
      const release = opts.registry.register(principal, (reason) => {
        opts.hub.unsubscribe(sub);
        end(reason);
      });
      const heartbeat = setInterval(() => !ended && res.write(`: heartbeat\n\n`), opts.heartbeatMs);
      open.add(end);
      req.raw.on('close', () => {
        open.delete(end);
        clearInterval(heartbeat);
        opts.hub.unsubscribe(sub);
        release();
        ended = true;
      });
      await opts.hub.catchUp(sub).catch((err) => {
        req.log.warn({ err }, 'replay failed; stream closed');
      });
    },
  );
};
