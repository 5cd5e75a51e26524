import { sql, type Kysely } from 'kysely';

// Frozen. The summary's time-driven counts (late, at risk, overrun) from maintained hour buckets
// (src/ops/facts.ts keys due:, risk:, overrun:, in order_counts) plus an exact count of the hour
// in progress. This index serves that hour for "at risk": an unfinished order is at risk or late
// from least(at_risk_at, due_at) on, so at risk = from that moment on, minus late.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index orders_unfinished_risk_from on orders ((least(at_risk_at, due_at))) where status in ('open', 'on_hold', 'shipped')`.execute(
    db,
  );
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists orders_unfinished_risk_from`.execute(db);
}
