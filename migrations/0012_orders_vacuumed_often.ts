import { sql, type Kysely } from 'kysely';

// Frozen. Every event updates its order, and each update clears the all-visible mark of the
// order's page, which the summary's index-only counts need: with autovacuum's default (a fifth of
// the table dead) 2,000,000 orders wait for 400,000 updates, and the summary took 40-49 ms
// instead of 10 (BENCHMARKS.md, round 9). Vacuumed at 1% (plus 1,000 rows), the marks come back
// within a minute of a burst of updates; a vacuum reads only the pages that changed.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table orders set (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table orders reset (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold)`.execute(db);
}
