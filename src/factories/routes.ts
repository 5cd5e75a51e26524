import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { requireRole } from '../auth/access.js';
import { countryCode, idParams } from '../http/schemas.js';
import { apiKeySchema, createApiKeyBody, createdApiKeySchema, createFactoryBody, FACTORY_KINDS, factorySchema } from './schemas.js';
import { createApiKey, createFactory, getFactory, listApiKeys, listFactories, revokeApiKey } from './service.js';

const tags = ['factories'];

export const factoryRoutes: FastifyPluginAsyncZod = async (app) => {
  const db = app.database.db;

  app.post(
    '/v1/factories',
    { schema: { tags, summary: 'Register a factory (admin)', body: createFactoryBody, response: { 201: factorySchema } } },
    async (req, reply) => {
      requireRole(req.principal!, 'admin');
      reply.status(201);
      return createFactory(db, req.body);
    },
  );

  app.get(
    '/v1/factories',
    {
      schema: {
        tags,
        summary: 'List factories (ops, admin), by id',
        querystring: z.strictObject({
          limit: z.coerce.number().int().min(1).max(200).default(50),
          after: z.uuid().optional(),
          kind: z.enum(FACTORY_KINDS).optional(),
          country: countryCode.optional(),
        }),
        response: { 200: z.object({ items: z.array(factorySchema), nextAfter: z.uuid().nullable() }) },
      },
    },
    async (req) => {
      requireRole(req.principal!, 'ops');
      const items = await listFactories(db, req.query);
      return { items, nextAfter: items.length === req.query.limit ? items.at(-1)!.id : null };
    },
  );

  app.get(
    '/v1/factories/:id',
    { schema: { tags, summary: 'One factory (ops, admin, or that factory)', params: idParams, response: { 200: factorySchema } } },
    async (req) => {
      const p = req.principal!;
      if (!(p.role === 'factory' && p.factoryId === req.params.id)) requireRole(p, 'ops');
      return getFactory(db, req.params.id);
    },
  );

  app.post(
    '/v1/factories/:id/api-keys',
    {
      schema: {
        tags,
        summary: 'Issue an API key for a factory (admin); the key is shown only here',
        params: idParams,
        body: createApiKeyBody.optional(),
        response: { 201: createdApiKeySchema },
      },
    },
    async (req, reply) => {
      requireRole(req.principal!, 'admin');
      reply.status(201);
      return createApiKey(db, req.params.id, req.body?.label);
    },
  );

  app.get(
    '/v1/factories/:id/api-keys',
    { schema: { tags, summary: "A factory's keys, without secrets (admin)", params: idParams, response: { 200: z.object({ items: z.array(apiKeySchema) }) } } },
    async (req) => {
      requireRole(req.principal!, 'admin');
      return { items: await listApiKeys(db, req.params.id) };
    },
  );

  app.delete(
    '/v1/api-keys/:id',
    { schema: { tags, summary: 'Revoke an API key (admin); it fails from the next request on', params: idParams, response: { 204: z.null() } } },
    async (req, reply) => {
      requireRole(req.principal!, 'admin');
      await revokeApiKey(db, req.params.id);
      app.notifier.keyRevoked(req.params.id); // every instance closes this key's sockets and streams
      return reply.status(204).send(null);
    },
  );
};
