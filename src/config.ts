import { z } from 'zod';

const optionalString = z.string().optional();
const int = (def: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce.number().int().min(min).max(max).default(def);

/** The whole environment the service reads, parsed once at start. */
export const configSchema = z
  .object({
    NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
    PORT: int(3000, 0, 65535),
    HOST: z.string().default('0.0.0.0'),
    DATABASE_URL: optionalString.pipe(
      z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL').optional(),
    ),
    DATA_DIR: z.string().default('./data'),
    DATABASE_POOL_SIZE: int(10, 1, 200),
    DATABASE_CONNECT_TIMEOUT_MS: int(3000, 100, 60_000),
    JWT_SECRET: optionalString.pipe(z.string().min(32, 'must be at least 32 characters').optional()),
    JWT_PUBLIC_KEY: optionalString,
    JWT_ISSUER: optionalString,
    TRUST_PROXY: z
      .enum(['true', 'false'])
      .default('false')
      .transform((v) => v === 'true'),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    BODY_LIMIT_BYTES: int(1_048_576, 1024, 64 * 1_048_576),
    BATCH_MAX_EVENTS: int(500, 1, 5000),
    RATE_LIMIT_PER_MINUTE: int(6000, 1),
    RATE_LIMIT_ANONYMOUS_PER_MINUTE: int(300, 1),
    IDEMPOTENCY_RETENTION_HOURS: int(48, 24),
    SHUTDOWN_GRACE_MS: int(10_000, 100),
    STREAM_POLL_MS: int(1000, 10),
    STREAM_BATCH_SIZE: int(1000, 10, 10_000),
    STREAM_MAX_TOPICS_PER_SOCKET: int(100, 1, 10_000),
    STREAM_MAX_CONNECTIONS_PER_CALLER: int(100, 1, 1_000_000),
    HTTP_HEADERS_TIMEOUT_MS: int(10_000, 100, 600_000),
    HTTP_REQUEST_TIMEOUT_MS: int(30_000, 100, 600_000),
    STREAM_MAX_PAYLOAD_BYTES: int(16_384, 1024),
    STREAM_MAX_BUFFERED_BYTES: int(1_048_576, 1024),
    STREAM_MAX_REPLAY_BUFFER: int(10_000, 10),
    SSE_HEARTBEAT_MS: int(15_000, 100),
    ALERTS_INTERVAL_MS: int(10_000, 100),
    ROUTE_CACHE_ORDERS: int(5000, 0, 1_000_000),
    SILENT_AFTER_HOURS: z.coerce.number().min(0.1).max(24 * 90).default(24),
  })
  .superRefine((c, ctx) => {
    if (c.NODE_ENV === 'production' && !c.JWT_SECRET && !c.JWT_PUBLIC_KEY) {
      ctx.addIssue({
        code: 'custom',
        path: ['JWT_SECRET'],
        message: 'JWT_SECRET or JWT_PUBLIC_KEY is required when NODE_ENV=production',
      });
    }
    if (c.HTTP_HEADERS_TIMEOUT_MS > c.HTTP_REQUEST_TIMEOUT_MS) {
      ctx.addIssue({ code: 'custom', path: ['HTTP_HEADERS_TIMEOUT_MS'], message: 'must not exceed HTTP_REQUEST_TIMEOUT_MS' });
    }
    if (c.JWT_SECRET && c.JWT_PUBLIC_KEY) {
      ctx.addIssue({
        code: 'custom',
        path: ['JWT_PUBLIC_KEY'],
        message: 'set JWT_SECRET or JWT_PUBLIC_KEY, not both',
      });
    }
  });

export type Config = z.infer<typeof configSchema>;

export class ConfigError extends Error {}

/** Parses the environment; the error names every bad variable and why. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // An empty (or blank) variable means "unset": `PORT= npm start` gets the default, not port 0.
  const set = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v.trim() !== ''));
  const parsed = configSchema.safeParse(set);
  if (parsed.success) return parsed.data;
  const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(env)'}: ${i.message}`);
  throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
}
