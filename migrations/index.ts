import type { Migration } from 'kysely/migration';
import * as m0001 from './0001_init.js';

/** Every migration, by name; names sort in the order they apply. Add new ones at the end. */
export const migrations: Record<string, Migration> = {
  '0001_init': m0001,
};
