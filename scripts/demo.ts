// npm run demo [-- --size tiny|small --port 3000 --speed 3600 --concurrency 30 --orders inf]
// A newcomer's one command: a fresh embedded database with a small world, the service on it, and
// the simulator driving it, so the board comes alive. Ctrl-C stops everything.
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, rmSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadOrCreateDevSecret } from '../src/auth/dev-secret.js';
import { mintToken } from '../src/auth/jwt.js';
import { openDatabase } from '../src/db/database.js';
import { migrateToLatest } from '../src/db/migrator.js';
import { progressLine } from '../src/simulator/progress-line.js';
import { runSimulation } from '../src/simulator/run-simulation.js';
import { formatStats } from '../src/simulator/stats.js';
import { generateWorld, WORLD_SIZES } from '../src/world/generate.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    size: { type: 'string', default: 'tiny' },
    port: { type: 'string', default: process.env.PORT ?? '3000' },
    speed: { type: 'string', default: '3600' },
    concurrency: { type: 'string', default: '30' },
    orders: { type: 'string', default: 'inf' },
    seed: { type: 'string', default: '42' },
    'data-dir': { type: 'string', default: join(root, 'data', 'demo') },
  },
});
const size = WORLD_SIZES[values.size!];
if (!size) throw new Error(`--size must be one of ${Object.keys(WORLD_SIZES).join(', ')}`);
const dataDir = resolve(values['data-dir']!);
const port = Number(values.port);
const base = `http://localhost:${port}`;
const shown = relative(process.cwd(), dataDir) || '.';

// Something else answering on the port would be simulated against instead of our server.
try {
  await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(2_000) });
  console.error(`port ${port} is in use (${base} answers); pick another with --port`);
  process.exit(1);
} catch {
  // free: nothing answers
}

// 1. A fresh embedded database with a world in it, loaded directly, before any server opens it.
rmSync(dataDir, { recursive: true, force: true });
const { secret } = loadOrCreateDevSecret(dataDir); // the server finds and uses the same secret
const started = Date.now();
const database = await openDatabase({ dataDir });
await migrateToLatest(database.db);
const world = await generateWorld(database.db, { ...size, seed: Number(values.seed) });
await database.close();
console.log(
  `world (${values.size}): ${world.orders} orders, ${world.customers} customers, ${world.factories} factories, ` +
    `${world.events} events in ${((Date.now() - started) / 1000).toFixed(1)} s`,
);

// 2. The service on that data directory, in its own process group: Ctrl-C reaches this script
// only, which stops the simulator first and the server after.
const log = join(dataDir, 'server.log');
const logFd = openSync(log, 'a');
const server: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
  cwd: root,
  env: {
    ...process.env,
    DATA_DIR: dataDir,
    PORT: String(port),
    LOG_LEVEL: 'warn',
    DATABASE_URL: '',
    JWT_SECRET: '',
    JWT_PUBLIC_KEY: '',
  },
  stdio: ['ignore', logFd, logFd],
  detached: true,
});
let serverExited = false;
const serverExit = new Promise<number | null>((done) =>
  server.once('exit', (code) => {
    serverExited = true;
    done(code);
  }),
);
process.on('exit', () => {
  if (!serverExited) server.kill('SIGKILL');
});

async function stopServer(): Promise<void> {
  if (serverExited) return;
  server.kill('SIGTERM');
  const closed = await Promise.race([serverExit.then(() => true), delay(15_000).then(() => false)]);
  if (!closed) server.kill('SIGKILL');
}

async function waitUntilReady(): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    if (serverExited) throw new Error(`the server exited at start; see ${log}`);
    try {
      if ((await fetch(`${base}/readyz`)).ok) return;
    } catch {
      // not listening yet
    }
    await delay(250);
  }
  throw new Error(`the server was not ready within 2 minutes; see ${log}`);
}

const stopping = new AbortController();
let interrupts = 0;
let serverDied = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (++interrupts > 1) {
      server.kill('SIGKILL');
      process.exit(130);
    }
    stopping.abort(new Error(signal));
  });
}
void serverExit.then((code) => {
  if (!stopping.signal.aborted) {
    console.error(`\nthe server stopped (exit ${code}); see ${log}`);
    serverDied = true;
    stopping.abort(new Error('server stopped'));
  }
});

try {
  await waitUntilReady();
} catch (err) {
  console.error((err as Error).message);
  await stopServer();
  process.exit(1);
}

// 3. Tokens, addresses, and the simulator until Ctrl-C.
const ops = await mintToken(secret, { sub: 'demo-ops', role: 'ops' }, 7 * 86_400);
const admin = await mintToken(secret, { sub: 'demo-simulator', role: 'admin' }, 7 * 86_400);
const speed = Number(values.speed);
console.log(
  [
    '',
    `orderstream demo on ${base} (embedded database in ${shown}; server log ${relative(process.cwd(), log)})`,
    `  Board:     ${base}/board#token=${ops}`,
    `  API docs:  ${base}/docs`,
    `  Ops token (7 days): export TOKEN=${ops}`,
    `  More tokens: DATA_DIR=${shown} npm run token -- --role admin`,
    '',
    `Simulating orders at ×${speed} (${speed === 3600 ? 'an hour a second' : `${(speed / 3600).toFixed(2)} h a second`}); Ctrl-C to stop.`,
  ].join('\n'),
);

const line = progressLine(process.stdout);
let code = 0;
try {
  const stats = await runSimulation({
    baseUrl: base,
    adminToken: admin,
    orders: values.orders === 'inf' ? Infinity : Number(values.orders),
    speed,
    concurrency: Number(values.concurrency),
    seed: Number(values.seed),
    signal: stopping.signal,
    onStats: (s) => line.update(s),
  });
  line.end();
  console.log(`final: ${formatStats(stats)}`);
  for (const e of stats.lastErrors) console.log(`  ! ${e}`);
} catch (err) {
  line.end();
  console.error(`simulation failed: ${err instanceof Error ? err.message : String(err)}`);
  code = 1;
}
if (!stopping.signal.aborted) {
  // Every order delivered: the service stays up for a look until Ctrl-C.
  console.log(`all orders delivered; the service stays up on ${base} until Ctrl-C`);
  await new Promise<void>((done) => stopping.signal.addEventListener('abort', () => done(), { once: true }));
}
console.log('stopping the server…');
await stopServer();
process.exit(serverDied ? 1 : code);
