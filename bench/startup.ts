import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startService } from './lib/service.js';

/** Spawn to the first 200 of /readyz on the embedded database, first start (a fresh data directory). */
export async function startupEmbedded(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'orderstream-bench-'));
  try {
    const p = await startService({ DATA_DIR: dir, DATABASE_URL: '' });
    await p.stop();
    return Math.round(p.readyMs);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Spawn to the first 200 of /readyz on the real Postgres (migrated, with the bench's data in it). */
export async function startupPostgres(url: string): Promise<number> {
  const p = await startService({ DATABASE_URL: url });
  await p.stop();
  return Math.round(p.readyMs);
}
