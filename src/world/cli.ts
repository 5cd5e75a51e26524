// npm run world -- --size small [--seed 42]   (or --orders N --customers N --factories N)
// Loads a generated network into DATABASE_URL, or the embedded database in DATA_DIR.
import { parseArgs } from 'node:util';
import { SingleBar, Presets } from 'cli-progress';
import { loadConfig } from '../config.js';
import { openDatabase } from '../db/database.js';
import { migrateToLatest } from '../db/migrator.js';
import { generateWorld, WORLD_SIZES } from './generate.js';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: 'small' },
    seed: { type: 'string', default: '42' },
    orders: { type: 'string' },
    customers: { type: 'string' },
    factories: { type: 'string' },
  },
});
const base = WORLD_SIZES[values.size!];
if (!base) throw new Error(`--size must be one of ${Object.keys(WORLD_SIZES).join(', ')}`);
const size = {
  ...base,
  ...(values.orders ? { orders: Number(values.orders) } : {}),
  ...(values.customers ? { customers: Number(values.customers) } : {}),
  ...(values.factories ? { factories: Number(values.factories) } : {}),
};
const config = loadConfig();
const database = await openDatabase(config.DATABASE_URL ? { url: config.DATABASE_URL } : { dataDir: config.DATA_DIR });
await migrateToLatest(database.db);
const bar = new SingleBar({ format: '{phase} [{bar}] {value}/{total} {percentage}% | {duration_formatted} | eta {eta_formatted}' }, Presets.shades_classic);
let phase = '';
const summary = await generateWorld(database, {
  ...size,
  seed: Number(values.seed),
  onProgress(p, done, total) {
    if (p !== phase) {
      if (phase) bar.stop();
      phase = p;
      bar.start(total, done, { phase: p.padEnd(9) });
    } else bar.update(done);
  },
});
bar.stop();
await database.close();
console.log(
  `loaded ${summary.orders} orders (${summary.events} events, ${summary.steps} steps), ${summary.customers} customers, ` +
    `${summary.engineers} engineers, ${summary.factories} factories in ${(summary.ms / 1000).toFixed(1)} s`,
);
