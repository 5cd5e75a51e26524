import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { writeTransactions } from '../db/flight.js';
import { forbidden, ProblemError, validationProblem } from '../http/problems.js';
import { idParams, problemSchema, writtenAsBuilt } from '../http/schemas.js';
import { getOrder } from '../orders/service.js';
import { AppendQueue } from './append-queue.js';
import { eventsOfOrder } from './repository.js';
import { batchBody, batchItemSchema, eventInputSchema, eventSchema, idempotencyKey } from './schemas.js';
import { appendEvents, type AppendObserver, type AppendRequest } from './service.js';

const tags = ['events'];
const idempotencyHeaders = z.looseObject({
  'idempotency-key': idempotencyKey.optional().describe('Makes retries safe: the same key and body return the original event'),
});

export const eventRoutes: FastifyPluginAsyncZod = async (app) => {
  const db = app.database.db;
  const writer = { db, transaction: writeTransactions(app.database), orders: app.orderStates, announcement: app.notifier.announcement };
  const { eventsAccepted, eventsRejected, eventsReplayed, appendTransactions } = app.metrics;
  const observer: AppendObserver = {
    accepted: (type) => eventsAccepted.inc({ type }),
    rejected: (type, problem) => eventsRejected.inc({ type, problem }),
    replayed: () => eventsReplayed.inc(),
    transaction: (path) => appendTransactions.inc({ path }),
  };
  // Single updates that arrive together are written together (group commit; see AppendQueue).
  const singles = new AppendQueue(writer, observer);

  app.post(
    '/v1/orders/:id/events',
    {
      schema: {
        tags,
        summary: 'Post a status update for an order (factory key for its own stages, ops, admin)',
        description:
          'Returns 201 with the new event, or 200 with the original event when the Idempotency-Key was seen with the same body. ' +
          'An impossible transition is a 409 that says why; the same key with another body is a 422.',
        params: idParams,
        headers: idempotencyHeaders,
        body: eventInputSchema,
        response: { 200: eventSchema, 201: eventSchema },
      },
      serializerCompiler: writtenAsBuilt, // tests hold every answer to the strict schema (helpers/world.ts)
    },
    async (req, reply) => {
      const principal = req.principal!;
      if (principal.role === 'customer') throw forbidden('customers read orders; they do not post events');
      const item = { principal, orderId: req.params.id, idempotencyKey: req.headers['idempotency-key'], body: req.body, path: 'body', validated: true };
      const result = await singles.append(item);
      if (result.error) throw ProblemError.from(result.error);
      if (result.status === 200) reply.header('idempotent-replayed', 'true');
      return reply.status(result.status as 200 | 201).send(result.event!);
    },
  );

  app.post(
    '/v1/events/batch',
    {
      schema: {
        tags,
        summary: `Post up to ${app.config.BATCH_MAX_EVENTS} status updates at once (factory key, ops, admin)`,
        description:
          'Each item is judged on its own and answered in order with the status it would get alone (201, 200 replay, 4xx with a problem). ' +
          'Every item needs an idempotencyKey.',
        body: batchBody.extend({ events: batchBody.shape.events.max(app.config.BATCH_MAX_EVENTS) }),
        response: {
          200: z.object({
            results: z.array(z.object({ status: z.number().int(), event: eventSchema.optional(), error: problemSchema.optional() })),
          }),
        },
      },
      serializerCompiler: writtenAsBuilt, // bad-input holds every answer to the strict schema
    },
    async (req) => {
      const requests: AppendRequest[] = [];
      const early = new Map<number, ProblemError>();
      req.body.events.forEach((item, i) => {
        const path = `events[${i}]`;
        const envelope = batchItemSchema.safeParse(item);
        if (!envelope.success) {
          early.set(i, validationProblem(envelope.error.issues, path));
          return;
        }
        const { orderId, idempotencyKey: key, ...body } = envelope.data;
        requests.push({ orderId, idempotencyKey: key, body, path });
      });
      const appended = await appendEvents(writer, req.principal!, requests, observer);
      let next = 0;
      const results = req.body.events.map((_, i) => {
        const bad = early.get(i);
        return bad ? { status: bad.status, error: bad.toProblem() } : appended[next++]!;
      });
      return { results };
    },
  );

  app.get(
    '/v1/orders/:id/events',
    {
      schema: {
        tags,
        summary: "An order's events in seq order (whoever may see the order)",
        params: idParams,
        querystring: z.strictObject({
          after: z.coerce.number().int().min(0).default(0).describe('Return events with seq greater than this'),
          limit: z.coerce.number().int().min(1).max(1000).default(100),
        }),
        response: { 200: z.object({ items: z.array(eventSchema), nextAfter: z.number().int() }) },
      },
    },
    async (req) => {
      await getOrder(db, req.principal!, req.params.id);
      const items = await eventsOfOrder(db, req.params.id, req.query.after, req.query.limit);
      return { items, nextAfter: items.at(-1)?.seq ?? req.query.after };
    },
  );
};
