// Runs the service: config → buildApp → listen → graceful close. Nothing else lives here.
import closeWithGrace from 'close-with-grace';
import { buildApp } from './app.js';
import { loadOrCreateDevSecret } from './auth/dev-secret.js';
import { mintToken } from './auth/jwt.js';
import { ConfigError, loadConfig } from './config.js';

const started = Date.now();
let config;
try {
  config = loadConfig();
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(1);
  }
  throw err;
}
let devSecret = false;
if (!config.JWT_SECRET && !config.JWT_PUBLIC_KEY) {
  config = { ...config, JWT_SECRET: loadOrCreateDevSecret(config.DATA_DIR).secret };
  devSecret = true;
}

const app = await buildApp({ config });
closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS }, async ({ signal, err }) => {
  if (err) app.log.error({ err }, 'closing after an error');
  else app.log.info({ signal }, 'closing: finishing in-flight requests');
  await app.close();
});

const address = await app.listen({ port: config.PORT, host: config.HOST });
app.log.info({ address, database: app.database.kind, ms: Date.now() - started }, 'ready');
if (devSecret) {
  const token = await mintToken(config.JWT_SECRET!, { sub: 'dev-admin', role: 'admin' }, 7 * 86400);
  const base = `http://localhost:${config.PORT}`;
  console.log(
    [
      '',
      `orderstream is ready on ${base} (${app.database.kind} database, ${Date.now() - started} ms)`,
      `  API docs:    ${base}/docs`,
      `  Admin token (development only, valid 7 days; more with npm run token -- --role ops):`,
      `  export TOKEN=${token}`,
      '',
    ].join('\n'),
  );
}
