import { sql, type Kysely } from 'kysely';

// Frozen. The at-risk list by promise date (src/orders/list.ts): an at-risk order is due from
// now on, so an order whose due date is its promise is promised from now on and is read from
// orders_unfinished_promised in order; the few whose due date a customer's hold moved are read
// from this one.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index orders_unfinished_moved_promised on orders (promised_at, id)
    where status in ('open', 'on_hold', 'shipped') and due_at <> promised_at`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists orders_unfinished_moved_promised`.execute(db);
}
