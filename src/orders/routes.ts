import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { requireRole } from '../auth/access.js';
import { fixedPlanRunner } from '../db/flight.js';
import { idempotencyKey } from '../events/schemas.js';
import { idParams, sendJson } from '../http/schemas.js';
import { CSV_MAX_ROWS, ordersCsv } from './csv.js';
import { listPage, pageJson } from './list.js';
import { RouteCache } from './route-cache.js';
import { createOrderBody, listOrdersQuery, orderSchema } from './schemas.js';
import { createOrder, getOrder } from './service.js';

const tags = ['orders'];

export const orderRoutes: FastifyPluginAsyncZod = async (app) => {
  const db = app.database.db;
  const routes = new RouteCache(app.config.ROUTE_CACHE_ORDERS);
  const fixedPlan = fixedPlanRunner(app.database);

  app.post(
    '/v1/orders',
    {
      schema: {
        tags,
        summary: 'Create an order with its route (ops, admin)',
        description:
          'Records the `created` event (seq 1). Planned start and end of each step are computed along the route from now. ' +
          'With an Idempotency-Key, a retry returns the order it created (200) instead of a second one.',
        headers: z.looseObject({ 'idempotency-key': idempotencyKey.optional() }),
        body: createOrderBody,
        response: { 200: orderSchema, 201: orderSchema },
      },
    },
    async (req, reply) => {
      requireRole(req.principal!, 'ops');
      const { order, replayed } = await createOrder(db, req.principal!, req.body, req.headers['idempotency-key'], new Date(), app.orderStates);
      if (replayed) reply.header('idempotent-replayed', 'true');
      else app.notifier.eventsAppended();
      return reply.status(replayed ? 200 : 201).send(order);
    },
  );

  app.get(
    '/v1/orders',
    {
      schema: {
        tags,
        summary: 'Orders the caller may see, filtered, in keyset pages',
        description:
          'late: promised date passed and not delivered, or delivered after it. atRisk: not late, but the projected completion ' +
          '(now plus the remaining planned work along the longest remaining path) is after the promised date. ' +
          'Every page of one walk is judged at the time of the first page.',
        querystring: listOrdersQuery,
        response: { 200: z.object({ items: z.array(orderSchema), nextCursor: z.string().nullable() }) },
      },
    },
    // Written here, routes as Postgres wrote them (list.ts pageJson); orders-listing holds every
    // page to the strict schema.
    async (req, reply) => sendJson(reply, pageJson(await listPage(db, req.principal!, req.query, new Date(), routes, fixedPlan))),
  );

  app.get(
    '/v1/orders.csv',
    {
      schema: {
        tags,
        summary: `The same listing as CSV, every page, at most ${CSV_MAX_ROWS} rows (ops, admin)`,
        querystring: listOrdersQuery.omit({ limit: true, cursor: true }),
        produces: ['text/csv'],
      },
    },
    async (req, reply) => {
      requireRole(req.principal!, 'ops');
      reply.type('text/csv; charset=utf-8').header('content-disposition', 'attachment; filename="orders.csv"');
      return reply.send(ordersCsv(db, req.principal!, { ...req.query, limit: 200 }));
    },
  );

  app.get(
    '/v1/orders/:id',
    { schema: { tags, summary: 'One order (its customer, a factory on its route, ops, admin)', params: idParams, response: { 200: orderSchema } } },
    async (req) => getOrder(db, req.principal!, req.params.id),
  );
};
