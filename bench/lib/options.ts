import { parseArgs } from 'node:util';
import { WORLD_SIZES } from '../../src/world/generate.js';

/** How big each measurement is: `--quick` keeps the same figures at a smaller scale. */
export interface Scale {
  quick: boolean;
  worldSize: string;
  orders: number;
  /** Concurrent factory clients posting single events (and pg connections for its ceiling). */
  concurrency: number;
  /** Seconds each throughput figure is measured for. */
  seconds: number;
  batchSize: number;
  batchConcurrency: number;
  sockets: number;
  /** Sockets for the memory figure: enough that they outweigh the heap's own growth steps. */
  memorySockets: number;
  /** How long each RSS floor is read for (ms). */
  memorySettleMs: number;
  /** Customer topics the sockets are spread over. */
  customers: number;
  e2eRate: number;
  /** Seconds a delivery rate must be held to count. */
  holdSeconds: number;
  /** The delivery rates tried, in deliveries per second, until one is not held. */
  ladder: number[];
  resumeEvents: number;
  queryRuns: number;
}

export interface Options {
  scale: Scale;
  out?: string;
  databaseUrl: string;
  seed: number;
  skipStartup: boolean;
  /** Only these measurements (others are reported as null): for working on one figure. */
  only: Set<Measurement>;
  /** Where the service processes and the raw Socket.IO server write their --cpu-prof profiles, if anywhere. */
  profileDir?: string;
  /**
   * An already loaded world (`npm run world`) for the queries figure: read only, never dropped.
   * A full-size world takes the better part of an hour to load; this measures it as often as needed.
   */
  worldUrl?: string;
}

export const MEASUREMENTS = ['queries', 'ingest', 'e2e', 'resume', 'memory', 'startup'] as const;
export type Measurement = (typeof MEASUREMENTS)[number];

const HELP = `npm run bench -- [--quick] [--out FILE] [--world-size tiny|small|medium|full] [--seed N] [--skip-startup]
                      [--only queries,ingest,e2e,resume,memory,startup] [--profile DIR] [--world-url URL]

--world-url URL  measure the queries on a world already loaded there (npm run world), read only

Runs every benchmark against a real Postgres (DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres)
in a database of its own (created and dropped), with the built service as separate processes.`;

export function parseOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      'world-size': { type: 'string' },
      seed: { type: 'string', default: '42' },
      'skip-startup': { type: 'boolean', default: false },
      only: { type: 'string' },
      profile: { type: 'string' },
      'world-url': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return undefined;
  }
  const quick = values.quick!;
  const worldSize = values['world-size'] ?? (quick ? 'small' : 'full');
  const world = WORLD_SIZES[worldSize];
  if (!world) throw new Error(`--world-size must be one of ${Object.keys(WORLD_SIZES).join(', ')}`);
  const seed = Number(values.seed);
  if (!Number.isSafeInteger(seed)) throw new Error('--seed must be an integer');
  const scale: Scale = quick
    ? { quick, worldSize, orders: world.orders, concurrency: 8, seconds: 5, batchSize: 100, batchConcurrency: 4, sockets: 200, memorySockets: 1000, memorySettleMs: 1000, customers: 20, e2eRate: 200, holdSeconds: 2, ladder: [5_000, 10_000, 20_000, 40_000, 80_000], resumeEvents: 10_000, queryRuns: 50 }
    : { quick, worldSize, orders: world.orders, concurrency: 8, seconds: 15, batchSize: 100, batchConcurrency: 4, sockets: 1000, memorySockets: 2000, memorySettleMs: 2000, customers: 100, e2eRate: 1000, holdSeconds: 10, ladder: [5_000, 10_000, 15_000, 20_000, 30_000, 40_000, 50_000, 60_000, 70_000, 80_000, 90_000, 100_000, 110_000, 120_000, 130_000, 140_000, 150_000], resumeEvents: 10_000, queryRuns: 200 };
  const only = new Set((values.only ?? MEASUREMENTS.join(',')).split(',').map((x) => x.trim()) as Measurement[]);
  for (const m of only) if (!MEASUREMENTS.includes(m)) throw new Error(`--only takes ${MEASUREMENTS.join(', ')}`);
  return {
    scale,
    only,
    profileDir: values.profile,
    worldUrl: values['world-url'],
    out: values.out,
    databaseUrl: process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres',
    seed,
    skipStartup: values['skip-startup']!,
  };
}
