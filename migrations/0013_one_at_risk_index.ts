import { sql, type Kysely } from 'kysely';

// Frozen. orders_unfinished_at_risk (at_risk_at) has the predicate and the leading column of
// orders_unfinished_at_risk_due (at_risk_at, due_at), which serves every read the first served;
// but every update of an order that is not HOT writes both (none is HOT: BENCHMARKS.md, round 12).
export async function up(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists orders_unfinished_at_risk`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`create index if not exists orders_unfinished_at_risk on orders (at_risk_at) where status in ('open', 'on_hold', 'shipped')`.execute(db);
}
