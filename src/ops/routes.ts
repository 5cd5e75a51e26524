import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { requireRole } from '../auth/access.js';
import { idParams } from '../http/schemas.js';
import { factoryPerformance, summary } from './queries.js';
import { performanceSchema, summarySchema, windowParam } from './schemas.js';

const tags = ['ops'];

export const opsRoutes: FastifyPluginAsyncZod<{ silentAfterHours: number }> = async (app, opts) => {
  const db = app.database.db;

  app.get(
    '/v1/ops/summary',
    {
      schema: {
        tags,
        summary: 'The network at a glance (ops, admin)',
        description:
          'Counts of unfinished orders now (open, on hold, in transit, late, at risk, silent, overrun, late start); ' +
          'over the window: deliveries, on-time delivery rate and lead time p50/p90; WIP per stage; the worst factories; open orders by customer country.',
        querystring: z.strictObject({ window: windowParam }),
        response: { 200: summarySchema },
      },
    },
    async (req) => {
      requireRole(req.principal!, 'ops');
      const w = req.query.window;
      return summary(db, { now: new Date(), windowHours: w.hours, window: w.text, silentAfterHours: opts.silentAfterHours });
    },
  );

  app.get(
    '/v1/ops/factories/:id/performance',
    {
      schema: {
        tags,
        summary: "A factory's performance over the window (ops, admin)",
        description:
          'A stage is on time when it took no more than its planned hours from its actual start; average delay counts the hours beyond plan. ' +
          'Dwell p50/p90 per stage against the planned hours; holds not caused by the customer; quality issues and scrap; steps in progress now.',
        params: idParams,
        querystring: z.strictObject({ window: windowParam }),
        response: { 200: performanceSchema },
      },
    },
    async (req) => {
      requireRole(req.principal!, 'ops');
      const w = req.query.window;
      return factoryPerformance(db, req.params.id, { now: new Date(), windowHours: w.hours, window: w.text });
    },
  );
};
