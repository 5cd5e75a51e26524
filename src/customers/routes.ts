import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { requireRole } from '../auth/access.js';
import { notFound } from '../http/problems.js';
import { idParams } from '../http/schemas.js';
import { createCustomerBody, createEngineerBody, customerSchema, engineerSchema } from './schemas.js';
import { createCustomer, createEngineer, getCustomer, listCustomers, listEngineers } from './service.js';

const tags = ['customers'];

export const customerRoutes: FastifyPluginAsyncZod = async (app) => {
  const db = app.database.db;

  app.post(
    '/v1/customers',
    { schema: { tags, summary: 'Create a customer (admin)', body: createCustomerBody, response: { 201: customerSchema } } },
    async (req, reply) => {
      requireRole(req.principal!, 'admin');
      reply.status(201);
      return createCustomer(db, req.body);
    },
  );

  app.get(
    '/v1/customers',
    {
      schema: {
        tags,
        summary: 'List customers (ops, admin), by id',
        querystring: z.strictObject({ limit: z.coerce.number().int().min(1).max(200).default(50), after: z.uuid().optional() }),
        response: { 200: z.object({ items: z.array(customerSchema), nextAfter: z.uuid().nullable() }) },
      },
    },
    async (req) => {
      requireRole(req.principal!, 'ops');
      const items = await listCustomers(db, req.query);
      return { items, nextAfter: items.length === req.query.limit ? items.at(-1)!.id : null };
    },
  );

  app.get(
    '/v1/customers/:id',
    { schema: { tags, summary: 'One customer (ops, admin, or that customer)', params: idParams, response: { 200: customerSchema } } },
    async (req) => {
      assertMayReadCustomer(req.principal!, req.params.id);
      return getCustomer(db, req.params.id);
    },
  );

  app.post(
    '/v1/customers/:id/engineers',
    {
      schema: { tags, summary: 'Add an engineer to a customer (admin)', params: idParams, body: createEngineerBody, response: { 201: engineerSchema } },
    },
    async (req, reply) => {
      requireRole(req.principal!, 'admin');
      reply.status(201);
      return createEngineer(db, req.params.id, req.body);
    },
  );

  app.get(
    '/v1/customers/:id/engineers',
    {
      schema: { tags, summary: "A customer's engineers (ops, admin, or that customer)", params: idParams, response: { 200: z.object({ items: z.array(engineerSchema) }) } },
    },
    async (req) => {
      assertMayReadCustomer(req.principal!, req.params.id);
      return { items: await listEngineers(db, req.params.id) };
    },
  );
};

/** Staff read any customer; a customer reads itself; for anyone else the customer does not exist. */
function assertMayReadCustomer(p: import('../auth/principal.js').Principal, customerId: string) {
  if (p.role === 'ops' || p.role === 'admin') return;
  if (p.role === 'customer' && p.customerId === customerId) return;
  if (p.role === 'customer') throw notFound('customer');
  requireRole(p, 'ops');
}
