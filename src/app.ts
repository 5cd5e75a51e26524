import { randomUUID } from 'node:crypto';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import {
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import { createAuthenticator, credentialsFromHeaders, type Authenticate } from './auth/authenticate.js';
import { ApiKeyCache } from './auth/key-cache.js';
import { OrderStateCache } from './orders/state-cache.js';
import { createJwtVerifier } from './auth/jwt.js';
import { principalId, type Principal } from './auth/principal.js';
import type { Config } from './config.js';
import { customerRoutes } from './customers/routes.js';
import { openDatabase, type Database } from './db/database.js';
import { preparedRunner } from './db/flight.js';
import { migrateToLatest } from './db/migrator.js';
import { eventRoutes } from './events/routes.js';
import { factoryRoutes } from './factories/routes.js';
import { clientErrorHandler } from './http/client-errors.js';
import { registerCompression } from './http/compression.js';
import { ConnectionLimiter } from './http/connection-limit.js';
import { frameworkErrors, registerErrorHandling } from './http/error-handler.js';
import { registerJsonParser } from './http/json-body.js';
import { requestSerializer } from './http/log-safety.js';
import { ProblemError } from './http/problems.js';
import { createMetrics, type Metrics } from './observability/metrics.js';
import { healthRoutes } from './observability/health-routes.js';
import { boardRoutes } from './board/routes.js';
import { scheduleAlerts } from './jobs/alerts.js';
import { scheduleRetention } from './jobs/retention.js';
import { scheduleRollups } from './jobs/rollups.js';
import { ConnectionRegistry } from './streams/connections.js';
import { StreamHub } from './streams/hub.js';
import { createNotifier, type Notifier } from './streams/notifier.js';
import { streamRoutes } from './streams/routes.js';
import { attachSocketServer } from './streams/socket-server.js';
import { opsRoutes } from './ops/routes.js';
import { orderRoutes } from './orders/routes.js';

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
    database: Database;
    metrics: Metrics;
    authenticate: Authenticate;
    notifier: Notifier;
    hub: StreamHub;
    /** Orders as this instance last committed them, for its next writes (orders/state-cache.ts). */
    orderStates: OrderStateCache;
  }
  interface FastifyRequest {
    principal?: Principal;
    authError?: ProblemError;
  }
}

export interface AppOptions {
  config: Config;
  /** An open database to use (tests, tools); otherwise one is opened from the config and closed with the app. */
  database?: Database;
  /** Pino options, or false for none. Defaults to the config's level with secrets redacted. */
  logger?: FastifyServerOptions['logger'];
  /** Where the default logger writes (stdout unless given). */
  logStream?: NodeJS.WritableStream;
}

// Up to 64: a trace id or a UUID fits, a key or a token sent by mistake does not.
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

export const REDACTED_PATHS = ['req.headers.authorization', 'req.headers["x-api-key"]', 'headers.authorization', 'headers["x-api-key"]'];

/** Builds the whole service without listening: `server.ts` runs it, tests drive it over HTTP. */
export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const { config } = opts;
  const app = Fastify({
    logger: opts.logger ?? {
      level: config.LOG_LEVEL,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      serializers: { req: requestSerializer },
      ...(opts.logStream ? { stream: opts.logStream } : {}),
    },
    bodyLimit: config.BODY_LIMIT_BYTES,
    // A caller's X-Request-Id is kept (and echoed, and logged) only if it is a sane token: a
    // 12 KB or binary one would be copied into every log line of the request, a key or token
    // sent as one would be logged.
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    // Slow clients may not hold a connection open for ever (slowloris): the headers must arrive
    // within HTTP_HEADERS_TIMEOUT_MS and the whole request within HTTP_REQUEST_TIMEOUT_MS (408),
    // checked every second rather than Node's default 30 s; an idle connection closes after 60 s.
    requestTimeout: config.HTTP_REQUEST_TIMEOUT_MS,
    http: { headersTimeout: config.HTTP_HEADERS_TIMEOUT_MS, connectionsCheckingInterval: 1000 },
    connectionTimeout: 60_000,
    // Only behind a proxy that sets X-Forwarded-For itself: otherwise callers could pick their address.
    trustProxy: config.TRUST_PROXY,
    frameworkErrors,
    clientErrorHandler,
    routerOptions: { maxParamLength: 200 },
  }).withTypeProvider<ZodTypeProvider>();

  // JSON only: any other body type is a 415, not a string the schemas then misread.
  app.removeContentTypeParser(['text/plain']);
  registerJsonParser(app);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  registerErrorHandling(app);

  // What was opened before a failure is closed again, so a failed start leaks no connection.
  const undo: Array<() => unknown> = [];
  try {
    await assemble(app, opts, undo);
  } catch (err) {
    for (const step of undo.reverse()) await Promise.resolve().then(step).catch(() => undefined);
    throw err;
  }
  return app;
}

type App = FastifyInstance & ReturnType<FastifyInstance['withTypeProvider']>;

/** The database, the streams, the jobs and the routes, on the configured server. */
async function assemble(app: App, opts: AppOptions, undo: Array<() => unknown>) {
  const { config } = opts;

  const database =
    opts.database ??
    (await openDatabase(
      config.DATABASE_URL
        ? {
            url: config.DATABASE_URL,
            poolSize: config.DATABASE_POOL_SIZE,
            connectTimeoutMs: config.DATABASE_CONNECT_TIMEOUT_MS,
            logger: app.log,
          }
        : { dataDir: config.DATA_DIR, logger: app.log },
    ));
  // The embedded database belongs to this process: bring it up to date on start. A shared
  // Postgres is migrated by `npm run db:migrate` as a deployment step (readyz reports if not).
  if (database.kind === 'embedded' && !opts.database) await migrateToLatest(database.db);
  if (!opts.database) {
    undo.push(() => database.close());
    app.addHook('onClose', () => database.close());
  }

  const jwt = createJwtVerifier({ secret: config.JWT_SECRET, publicKey: config.JWT_PUBLIC_KEY, issuer: config.JWT_ISSUER });
  app.decorate('config', config);
  app.decorate('database', database);
  app.decorate('metrics', createMetrics(database));
  const keys = new ApiKeyCache();
  app.decorate('authenticate', createAuthenticator(database.db, jwt, keys));
  app.decorate('orderStates', new OrderStateCache());

  app.addHook('onSend', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });
  await registerCompression(app);
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    app.metrics.httpDuration.observe(
      { method: req.method, route, status_code: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'orderstream',
        version: '1.0.0',
        description:
          'Real-time order tracking for a PCB / PCBA manufacturing network. Errors are application/problem+json (RFC 9457). ' +
          'Answers over 1 KB are compressed for clients that send Accept-Encoding (br, gzip, deflate); request bodies may be ' +
          'sent with Content-Encoding br, gzip or deflate, and count against the body limit inflated.',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
          apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
        },
      },
      security: [{ bearer: [] }, { apiKey: [] }],
    },
    transform: jsonSchemaTransform,
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true }, config: { rateLimit: false } }, async () => app.swagger());

  // Who is calling is settled first, without failing yet, so the rate limiter can count
  // anonymous and refused callers by address and known ones by identity.
  app.addHook('onRequest', async (req) => {
    const credentials = credentialsFromHeaders(req.headers);
    if (credentials.apiKey === undefined && credentials.bearer === undefined) return;
    try {
      req.principal = await app.authenticate(credentials);
    } catch (err) {
      if (err instanceof ProblemError) req.authError = err;
      else throw err;
    }
  });
  await app.register(rateLimit, {
    global: true,
    hook: 'onRequest',
    timeWindow: 60_000,
    keyGenerator: (req) => (req.principal ? principalId(req.principal) : `ip:${req.ip}`),
    max: (req) => (req.principal ? config.RATE_LIMIT_PER_MINUTE : config.RATE_LIMIT_ANONYMOUS_PER_MINUTE),
    errorResponseBuilder: (_req, ctx) =>
      new ProblemError(429, 'rate-limited', `rate limit of ${ctx.max} requests per minute exceeded; retry in ${ctx.after}`),
  });

  // Streams: the wake-ups between instances, this instance's tail of the log, and its connections.
  const logError = (msg: string) => (err: unknown) => app.log.warn({ err }, msg);
  const notifier = await createNotifier(database, logError('stream notification failed'), (way) => app.metrics.notifications.inc({ way }));
  undo.push(() => notifier.close());
  // Verified keys are served from memory while this instance hears revocations (auth/key-cache.ts).
  notifier.on('revoked', (keyId) => keys.forget(keyId));
  notifier.on('resync', () => keys.clear());
  keys.trustWhile(() => notifier.listening());
  const hub = new StreamHub(
    database.db,
    notifier,
    { pollMs: config.STREAM_POLL_MS, batchSize: config.STREAM_BATCH_SIZE, maxReplayBuffer: config.STREAM_MAX_REPLAY_BUFFER },
    logError('stream tail failed; retrying'),
    preparedRunner(database),
  );
  await hub.start();
  undo.push(() => hub.stop());
  const registry = new ConnectionRegistry(database.db, notifier, logError('revocation check failed'));
  undo.push(() => registry.stop());
  app.decorate('notifier', notifier);
  app.decorate('hub', hub);
  app.metrics.observeStreams(() => ({
    subscriptions: hub.subscriptions,
    read: hub.read,
    delivered: hub.delivered,
    connections: registry.size,
    reads: hub.reads,
  }));
  // Open streams per caller, sockets and SSE together; refused with 429 once at the limit.
  const streams = new ConnectionLimiter(config.STREAM_MAX_CONNECTIONS_PER_CALLER);
  app.addHook('onRequest', async (req, reply) => {
    if (!req.principal || req.routeOptions.url !== '/v1/stream') return;
    const release = streams.acquire(principalId(req.principal));
    if (!release) throw streams.refusal();
    reply.raw.once('close', release);
  });
  const io = attachSocketServer(app, hub, registry, {
    maxTopicsPerSocket: config.STREAM_MAX_TOPICS_PER_SOCKET,
    maxPayloadBytes: config.STREAM_MAX_PAYLOAD_BYTES,
    maxBufferedBytes: config.STREAM_MAX_BUFFERED_BYTES,
  });
  // Runs after the handshake's authentication (registered before it in attachSocketServer).
  io.of('/v1').use((socket, next) => {
    const release = streams.acquire(principalId(socket.data.principal as Principal));
    if (!release) {
      const refusal = streams.refusal();
      return next(Object.assign(new Error(refusal.message), { data: { status: 429, title: 'Too Many Requests', detail: refusal.message } }));
    }
    // Released when the socket leaves or its connection closes, whichever comes first; a
    // connection already gone while the handshake was checked takes no slot at all.
    socket.once('disconnect', release);
    socket.conn.once('close', release);
    if (socket.conn.readyState !== 'open') release();
    next();
  });
  const stopAlerts = scheduleAlerts(database, config.ALERTS_INTERVAL_MS, () => notifier.eventsAppended(), logError('alert pass failed'));
  undo.push(stopAlerts);
  app.addHook('preClose', async () => {
    stopAlerts();
    hub.stop();
    registry.stop();
    // Tell every socket why it closes; they resume elsewhere with their cursor.
    io.of('/v1').emit('closing', { reason: 'server shutting down' });
    io.of('/v1').disconnectSockets(true);
    io.engine.close();
  });
  app.addHook('onClose', async () => notifier.close());

  const stopRetention = scheduleRetention(database, config.IDEMPOTENCY_RETENTION_HOURS, (err) =>
    app.log.warn({ err }, 'idempotency key purge failed'),
  );
  undo.push(stopRetention);
  // The KPI rollups fold the facts writers record; readers add what is not folded yet.
  const stopRollups = scheduleRollups(database, 2_000, (err) => app.log.warn({ err }, 'KPI rollup fold failed'));
  undo.push(stopRollups);
  app.addHook('onClose', async () => stopRollups());
  app.addHook('onClose', async () => stopRetention());

  await app.register(healthRoutes);
  await app.register(boardRoutes);
  await app.register(async (api) => {
    // Every route in this context needs a verified caller; refused before the body is read.
    api.addHook('preParsing', async (req) => {
      if (req.authError) throw req.authError;
      if (!req.principal) throw new ProblemError(401, 'unauthorized', 'credentials required: Authorization: Bearer <token> or X-API-Key');
    });
    await api.register(customerRoutes);
    await api.register(factoryRoutes);
    await api.register(orderRoutes);
    await api.register(eventRoutes);
    await api.register(opsRoutes, { silentAfterHours: config.SILENT_AFTER_HOURS });
    await api.register(streamRoutes, {
      hub,
      registry,
      heartbeatMs: config.SSE_HEARTBEAT_MS,
      maxBufferedBytes: config.STREAM_MAX_BUFFERED_BYTES,
    });
  });

}
