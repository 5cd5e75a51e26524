import { sql, type Kysely } from 'kysely';

// Frozen. The summary counts the orders at risk or late since the hour began from
// orders_unfinished_risk_from (0008). An index on an expression serves an index-only scan only if
// it also holds the columns the expression is made of: without them every order counted was
// fetched from the table, 954 rows and 8.6 ms on 2,000,000 orders; with them 11 buffers and
// 0.2 ms (BENCHMARKS.md, change 70).
export async function up(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists orders_unfinished_risk_from`.execute(db);
  await sql`create index orders_unfinished_risk_from on orders ((least(at_risk_at, due_at))) include (at_risk_at, due_at)
    where status in ('open', 'on_hold', 'shipped')`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists orders_unfinished_risk_from`.execute(db);
  await sql`create index orders_unfinished_risk_from on orders ((least(at_risk_at, due_at))) where status in ('open', 'on_hold', 'shipped')`.execute(
    db,
  );
}
