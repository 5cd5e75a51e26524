import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ConfigError, loadConfig, type Config } from '../src/config.js';

// The environment is parsed once, by loadConfig: defaults for everything unset, and a ConfigError
// that names each bad variable. An empty variable (`FOO= npm start`) is the same as an unset one.

const SECRET = 'a'.repeat(32);

/** The ConfigError thrown for env, failing the test when none is thrown. */
function errorFor(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`no ConfigError for ${JSON.stringify(env)}`);
}

describe('loadConfig', () => {
  it('gives the defaults when nothing is set', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      NODE_ENV: 'development',
      PORT: 3000,
      HOST: '0.0.0.0',
      DATA_DIR: './data',
      DATABASE_POOL_SIZE: 10,
      TRUST_PROXY: false,
      LOG_LEVEL: 'info',
      BODY_LIMIT_BYTES: 1_048_576,
      BATCH_MAX_EVENTS: 500,
      IDEMPOTENCY_RETENTION_HOURS: 48,
      SILENT_AFTER_HOURS: 24,
    } satisfies Partial<Config>);
    expect(c.DATABASE_URL).toBeUndefined();
    expect(c.JWT_SECRET).toBeUndefined();
    expect(c.JWT_PUBLIC_KEY).toBeUndefined();
  });

  it('reads what is set, coercing numbers and booleans', () => {
    const c = loadConfig({
      NODE_ENV: 'production',
      PORT: '8080',
      DATABASE_URL: 'postgres://u:p@db:5432/orders',
      JWT_SECRET: SECRET,
      TRUST_PROXY: 'true',
      DATABASE_POOL_SIZE: '25',
    });
    expect(c).toMatchObject({
      NODE_ENV: 'production',
      PORT: 8080,
      DATABASE_URL: 'postgres://u:p@db:5432/orders',
      JWT_SECRET: SECRET,
      TRUST_PROXY: true,
      DATABASE_POOL_SIZE: 25,
    });
    expect(loadConfig({ DATABASE_URL: 'postgresql://localhost/x' }).DATABASE_URL).toBe('postgresql://localhost/x');
  });

  it.each(['abc', '70000', '-1', '3.5', '80a'])('PORT=%s is a ConfigError naming PORT', (port) => {
    expect(errorFor({ PORT: port }).message).toContain('PORT');
  });

  it.each(['mysql://db/orders', 'localhost:5432', 'http://db:5432/orders'])(
    'DATABASE_URL=%s is a ConfigError naming DATABASE_URL',
    (url) => {
      expect(errorFor({ DATABASE_URL: url }).message).toContain('DATABASE_URL');
    },
  );

  it('a JWT_SECRET shorter than 32 characters is a ConfigError naming JWT_SECRET', () => {
    expect(errorFor({ JWT_SECRET: 'too-short' }).message).toContain('JWT_SECRET');
    expect(errorFor({ JWT_SECRET: 'a'.repeat(31) }).message).toContain('JWT_SECRET');
    expect(loadConfig({ JWT_SECRET: SECRET }).JWT_SECRET).toBe(SECRET);
  });

  it('NODE_ENV=production without a secret or public key is a ConfigError naming JWT_SECRET', () => {
    expect(errorFor({ NODE_ENV: 'production' }).message).toContain('JWT_SECRET');
    expect(errorFor({ NODE_ENV: 'production', JWT_SECRET: '' }).message).toContain('JWT_SECRET');
    expect(loadConfig({ NODE_ENV: 'production', JWT_SECRET: SECRET }).NODE_ENV).toBe('production');
    expect(
      loadConfig({ NODE_ENV: 'production', JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----' })
        .NODE_ENV,
    ).toBe('production');
  });

  it('names every bad variable at once', () => {
    const message = errorFor({ PORT: 'x', DATABASE_URL: 'mysql://db', JWT_SECRET: 'short' }).message;
    for (const name of ['PORT', 'DATABASE_URL', 'JWT_SECRET']) expect(message).toContain(name);
  });

  it('an empty PORT is unset (3000), not port 0', () => {
    expect(loadConfig({ PORT: '' }).PORT).toBe(3000);
  });

  it('an empty variable counts as unset, whichever it is', () => {
    const defaults = loadConfig({}) as Record<string, unknown>;
    const names = [...new Set([...Object.keys(defaults), 'DATABASE_URL', 'JWT_SECRET', 'JWT_PUBLIC_KEY', 'JWT_ISSUER'])];
    const differs: string[] = [];
    for (const name of names) {
      try {
        const c = loadConfig({ [name]: '' }) as Record<string, unknown>;
        if (JSON.stringify(c[name]) !== JSON.stringify(defaults[name]))
          differs.push(`${name}= gives ${JSON.stringify(c[name])}, unset gives ${JSON.stringify(defaults[name])}`);
      } catch (err) {
        differs.push(`${name}= throws: ${(err as Error).message.split('\n').slice(1).join(' ').trim()}`);
      }
    }
    expect(differs).toEqual([]);
  });
});

const COMPOSE = fileURLToPath(new URL('../docker-compose.yml', import.meta.url));

describe('docker-compose.yml', () => {
  it.skipIf(!existsSync(COMPOSE))('runs the app against a postgres:17 service', () => {
    const compose = parse(readFileSync(COMPOSE, 'utf8'));
    const { postgres, app } = compose.services ?? {};
    expect(postgres, 'a postgres service').toBeDefined();
    expect(app, 'an app service').toBeDefined();
    expect(postgres.image).toMatch(/^postgres:17(\b|$)/);

    const env = (service: any): Record<string, string> =>
      Array.isArray(service.environment)
        ? Object.fromEntries(
            service.environment.map((kv: string) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
          )
        : (service.environment ?? {});
    const appEnv = env(app);
    const pgEnv = env(postgres);
    expect(appEnv.DATABASE_URL, 'the app has a DATABASE_URL').toBeDefined();
    const url = new URL(appEnv.DATABASE_URL!);
    expect(url.protocol).toMatch(/^postgres(ql)?:$/);
    expect(url.hostname, 'DATABASE_URL points at the postgres service').toBe('postgres');
    expect(url.port || '5432').toBe('5432');
    // …with the credentials and database that service is created with.
    if (pgEnv.POSTGRES_USER) expect(decodeURIComponent(url.username)).toBe(pgEnv.POSTGRES_USER);
    if (pgEnv.POSTGRES_PASSWORD) expect(decodeURIComponent(url.password)).toBe(pgEnv.POSTGRES_PASSWORD);
    expect(url.pathname.slice(1)).toBe(pgEnv.POSTGRES_DB ?? pgEnv.POSTGRES_USER ?? 'postgres');

    // The app's environment is a valid configuration (given a secret where compose interpolates one).
    const resolved = Object.fromEntries(
      Object.entries(appEnv).map(([k, v]) => [k, /\$\{/.test(String(v)) ? (k === 'JWT_SECRET' ? SECRET : '') : String(v)]),
    );
    expect(() => loadConfig(resolved)).not.toThrow();
  });
});
