import { sql, type Kysely } from 'kysely';

// Frozen. The at-risk list, worst first, reads the orders paused by their customer from
// orders_paused_by_customer: not yet due (a range of its first column), and at risk. With the
// at-risk instant in the index that is a condition on each entry; without it, a filter on each
// paused order's row: 1,770 rows read for none kept, 1.7 of the list's 2.3 ms on 2,000,000
// orders (BENCHMARKS.md, change 69). The late list and the summary read the first two columns, as before.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists orders_paused_by_customer`.execute(db);
  await sql`create index orders_paused_by_customer on orders (due_at, held_at, at_risk_at)
    where hold_cause = 'engineering_query' and status in ('open', 'on_hold', 'shipped')`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists orders_paused_by_customer`.execute(db);
  await sql`create index orders_paused_by_customer on orders (due_at, held_at)
    where hold_cause = 'engineering_query' and status in ('open', 'on_hold', 'shipped')`.execute(db);
}
