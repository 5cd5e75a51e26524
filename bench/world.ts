import type { Kysely } from 'kysely';
import type { DB } from '../src/db/schema.js';
import { generateWorld, WORLD_SIZES, type WorldSummary } from '../src/world/generate.js';

/** Loads the world generator's network of the given size into the bench database. */
export function loadWorld(db: Kysely<DB>, size: string, seed: number, onProgress: (phase: string, done: number, total: number) => void): Promise<WorldSummary> {
  return generateWorld(db, { ...WORLD_SIZES[size]!, seed, onProgress });
}
