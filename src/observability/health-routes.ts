import { sql } from 'kysely';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { pendingMigrations } from '../db/migrator.js';
import { ProblemError } from '../http/problems.js';

const READY_TIMEOUT_MS = 2000;

function withinMs<T>(ms: number, work: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  const run = work();
  run.catch(() => undefined); // it may fail after the deadline: nobody waits for it then
  return Promise.race([run, late]).finally(() => clearTimeout(timer));
}

/** Liveness, readiness and metrics: public, never rate limited, never authenticated. */
export async function healthRoutes(app: FastifyInstance) {
  const hide = { hide: true } as const;
  app.get('/healthz', { schema: { ...hide }, config: { rateLimit: false } }, async () => ({ status: 'ok' }));

  app.get(
    '/readyz',
    {
      config: { rateLimit: false },
      schema: {
        summary: 'Readiness: the database answers and every migration is applied',
        tags: ['operations'],
        response: { 200: z.object({ status: z.literal('ready'), database: z.string() }) },
      },
    },
    async () => {
      let pending: string[];
      try {
        // A database that stops answering (frozen, partitioned) must not hold the probe: an
        // orchestrator needs "not ready" in time to route traffic elsewhere.
        pending = await withinMs(READY_TIMEOUT_MS, async () => {
          await sql`select 1`.execute(app.database.db);
          return pendingMigrations(app.database.db);
        });
      } catch {
        throw new ProblemError(503, 'database-unavailable', 'the database is not reachable', {
          headers: { 'retry-after': '5' },
        });
      }
      if (pending.length) {
        throw new ProblemError(503, 'migrations-pending', `migrations not applied: ${pending.join(', ')}`, {
          headers: { 'retry-after': '30' },
        });
      }
      return { status: 'ready' as const, database: app.database.kind };
    },
  );

  app.get('/metrics', { schema: { ...hide }, config: { rateLimit: false } }, async (_req, reply) => {
    reply.type(app.metrics.registry.contentType);
    return app.metrics.registry.metrics();
  });
}
