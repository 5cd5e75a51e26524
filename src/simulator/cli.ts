// npm run simulate -- [--url http://localhost:3000] [--token <admin JWT>] [--orders 50] [--speed 3600] …
import { parseArgs } from 'node:util';
import { ROUTES } from '../world/catalogue.js';
import { mintLocalToken } from './admin-token.js';
import { progressLine } from './progress-line.js';
import { runSimulation } from './run-simulation.js';
import { formatStats, type SimulationStats } from './stats.js';

const USAGE = `npm run simulate -- [options]

Drives a running orderstream through its public API, as factory systems do: orders created by
ops, each stage reported by the factory that owns it with its own API key, retries with the same
Idempotency-Key, duplicates, holds, quality issues, re-routes and orders that slip.

  --url URL            the service (default http://localhost:3000)
  --token JWT          an admin token (default: minted from JWT_SECRET, or the development
                       secret in DATA_DIR, like npm run token)
  --orders N           orders to create and drive; "inf" until stopped (default 50)
  --speed F            time compression: planned hours pass F times faster (default 3600: an hour a second)
  --concurrency N      orders driven at once (default 20)
  --duration S         stop after S seconds
  --seed N             the same seed draws the same orders
  --templates a,b      route templates among ${Object.keys(ROUTES).join(', ')} (default all)
  --factories-per-kind N, --customers N   the network to use, listed or created (default 3, 5)
  -h, --help

Ctrl-C stops: the run's API keys are revoked and the final counts printed.`;

function fail(message: string): never {
  console.error(`${message}\n\n${USAGE}`);
  process.exit(2);
}

function number(name: string, value: string | undefined, o: { min: number; integer?: boolean }): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n < o.min || (o.integer && !Number.isInteger(n)))
    fail(`--${name} must be ${o.integer ? 'an integer' : 'a number'} ≥ ${o.min}, got ${value}`);
  return n;
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      url: { type: 'string', default: 'http://localhost:3000' },
      token: { type: 'string' },
      orders: { type: 'string' },
      speed: { type: 'string' },
      concurrency: { type: 'string' },
      duration: { type: 'string' },
      seed: { type: 'string' },
      templates: { type: 'string' },
      'factories-per-kind': { type: 'string' },
      customers: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  }));
} catch (err) {
  fail((err as Error).message);
}
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

let adminToken = values.token;
if (!adminToken) {
  const minted = await mintLocalToken('admin', 'simulator');
  if (minted.createdSecret)
    console.warn(
      'note: created a new development secret in DATA_DIR; a server started before with another secret will refuse the token',
    );
  adminToken = minted.token;
}

const stopping = new AbortController();
process.on('SIGINT', () => {
  if (stopping.signal.aborted) process.exit(130);
  stopping.abort(new Error('interrupted'));
});
process.on('SIGTERM', () => stopping.abort(new Error('terminated')));

const line = progressLine();
let stats: SimulationStats;
try {
  stats = await runSimulation({
    baseUrl: values.url!,
    adminToken,
    orders: values.orders === 'inf' ? Infinity : number('orders', values.orders, { min: 0, integer: true }),
    speed: number('speed', values.speed, { min: 1e-6 }),
    concurrency: number('concurrency', values.concurrency, { min: 1, integer: true }),
    durationMs: values.duration === undefined ? undefined : number('duration', values.duration, { min: 0 })! * 1000,
    seed: number('seed', values.seed, { min: 0, integer: true }),
    templates: values.templates?.split(',').map((t) => t.trim()),
    factoriesPerKind: number('factories-per-kind', values['factories-per-kind'], { min: 1, integer: true }),
    customers: number('customers', values.customers, { min: 1, integer: true }),
    signal: stopping.signal,
    onStats: (s) => line.update(s),
  });
} catch (err) {
  line.end();
  console.error(`simulation failed: ${err instanceof Error ? err.message : String(err)}`);
  if (err instanceof TypeError && String(err.cause ?? '').includes('ECONNREFUSED'))
    console.error(`is the service running on ${values.url}? (npm start)`);
  process.exit(1);
}
line.end();
console.log(`final: ${formatStats(stats)}`);
console.log(`  requests ${stats.requests}, by status ${JSON.stringify(stats.statuses)}`);
if (Object.keys(stats.conflicts).length) console.log(`  409s by problem ${JSON.stringify(stats.conflicts)}`);
for (const e of stats.lastErrors) console.log(`  ! ${e}`);
const serverErrors = Object.keys(stats.errors).some((s) => Number(s) >= 500);
process.exit(stats.duplicatesAccepted > 0 || serverErrors ? 1 : 0);
