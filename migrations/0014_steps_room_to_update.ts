import { sql, type Kysely } from 'kysely';

// Frozen. A progress update changes a step's progress and nothing any of its six indexes holds,
// so it can be a HOT update (no index entries written) if its page has room for the new version.
// Full pages (fillfactor 100) made every update write all six indexes. Pages written from now on
// keep 30% free; pages already full get room as their rows move (or at once: VACUUM FULL).
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table order_steps set (fillfactor = 70)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table order_steps reset (fillfactor)`.execute(db);
}
