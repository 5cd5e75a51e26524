import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Database } from '../db/database.js';

/** How the stream tail read the log: sent behind an append's commit (streams/hub.ts ride), or on its own. */
export type TailRead = 'behind_commit' | 'alone';

/** The service's Prometheus metrics, on a registry of its own (several apps may share a process). */
export function createMetrics(database: Database) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by route and status',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const eventsAccepted = new Counter({
    name: 'orderstream_events_accepted_total',
    help: 'Status updates appended to the event log, by type',
    labelNames: ['type'] as const,
    registers: [registry],
  });
  const eventsRejected = new Counter({
    name: 'orderstream_events_rejected_total',
    help: 'Status updates refused, by type and problem',
    labelNames: ['type', 'problem'] as const,
    registers: [registry],
  });
  const eventsReplayed = new Counter({
    name: 'orderstream_events_replayed_total',
    help: 'Status updates answered from their Idempotency-Key without a new event',
    registers: [registry],
  });
  const appendTransactions = new Counter({
    name: 'orderstream_append_transactions_total',
    help: 'Append transactions by path: kept (one round trip on orders this instance keeps), stale (kept orders had moved: redone), loaded',
    labelNames: ['path'] as const,
    registers: [registry],
  });
  const notifications = new Counter({
    name: 'orderstream_notifications_total',
    help: 'Appended events announced to the other instances (NOTIFY), by way: carried in the append transaction, or alone',
    labelNames: ['way'] as const,
    registers: [registry],
  });
  // The real Postgres's pools: queries, the append path's writes, and the lists run with their generic plan.
  const pools = Object.entries({ queries: database.pool, writes: database.pipelinePool, fixed_plans: database.fixedPlanPool }).filter(
    (e): e is [string, NonNullable<(typeof e)[1]>] => e[1] !== undefined,
  );
  if (pools.length) {
    new Gauge({
      name: 'orderstream_db_pool_connections',
      help: 'Database pool connections by pool and state',
      labelNames: ['pool', 'state'] as const,
      registers: [registry],
      collect() {
        for (const [name, pool] of pools) {
          this.set({ pool: name, state: 'total' }, pool.totalCount);
          this.set({ pool: name, state: 'idle' }, pool.idleCount);
          this.set({ pool: name, state: 'waiting' }, pool.waitingCount);
        }
      },
    });
  }
  // Stream figures are read from the hub when scraped: nothing to update on the hot path.
  let streams: () => { subscriptions: number; read: number; delivered: number; connections: number; reads: Record<TailRead, number> } = () => ({
    subscriptions: 0,
    read: 0,
    delivered: 0,
    connections: 0,
    reads: { behind_commit: 0, alone: 0 },
  });
  const gauge = (name: string, help: string, pick: (s: ReturnType<typeof streams>) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(pick(streams()));
      },
    });
  gauge('orderstream_stream_subscriptions', 'Open stream subscriptions on this instance (socket topics and SSE)', (s) => s.subscriptions);
  gauge('orderstream_stream_events_read', 'Events read from the log by this instance since start (a counter)', (s) => s.read);
  gauge('orderstream_stream_events_delivered', 'Event deliveries to subscribers by this instance since start (a counter)', (s) => s.delivered);
  new Gauge({
    name: 'orderstream_stream_tail_reads',
    help: "The tail's reads of the log since start (a counter), by way: behind an append's commit on its connection, or alone",
    labelNames: ['way'] as const,
    registers: [registry],
    collect() {
      for (const [way, n] of Object.entries(streams().reads)) this.set({ way }, n);
    },
  });
  gauge('orderstream_stream_factory_connections', 'Open sockets and SSE streams opened with a factory key', (s) => s.connections);
  const observeStreams = (fn: typeof streams) => {
    streams = fn;
  };
  return { registry, httpDuration, eventsAccepted, eventsRejected, eventsReplayed, appendTransactions, notifications, observeStreams };
}

export type Metrics = ReturnType<typeof createMetrics>;
