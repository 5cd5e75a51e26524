import { sql, type Kysely } from 'kysely';

// Frozen. The late list reads the orders paused by their customer from orders_paused_by_customer,
// always with the unfinished statuses beside it. An index without them let the planner AND it with
// a partial index of every unfinished order, scanned whole for its predicate: 19 ms of the late
// list's 24 on 2,000,000 orders (BENCHMARKS.md). With the statuses in its predicate it serves alone.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists orders_paused_by_customer`.execute(db);
  await sql`create index orders_paused_by_customer on orders (due_at, held_at)
    where hold_cause = 'engineering_query' and status in ('open', 'on_hold', 'shipped')`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists orders_paused_by_customer`.execute(db);
  await sql`create index orders_paused_by_customer on orders (due_at, held_at) where hold_cause = 'engineering_query'`.execute(db);
}
