import { sql, type Kysely } from 'kysely';

// Frozen. The at-risk list by promise date reads the orders whose due date moved past their
// promise from orders_unfinished_moved_promised, in promise order. With the at-risk window's two
// instants in the index (after the columns it is read in order of), the window is a condition on
// each entry; without them, a filter on each order's row: 1,735 rows fetched for a page of 51, most
// of the list's 1,749 buffers on 2,000,000 orders (BENCHMARKS.md, change 71).
export async function up(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists orders_unfinished_moved_promised`.execute(db);
  await sql`create index orders_unfinished_moved_promised on orders (promised_at, id, at_risk_at, due_at)
    where status in ('open', 'on_hold', 'shipped') and due_at <> promised_at`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists orders_unfinished_moved_promised`.execute(db);
  await sql`create index orders_unfinished_moved_promised on orders (promised_at, id)
    where status in ('open', 'on_hold', 'shipped') and due_at <> promised_at`.execute(db);
}
