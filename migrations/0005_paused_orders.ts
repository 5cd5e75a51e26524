import { sql, type Kysely } from 'kysely';

// Frozen. The orders whose clock the customer paused (an engineering query) are listed by
// lateness apart from the rest (see src/orders/list.ts); they are few, and this finds them
// without reading every unfinished order.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index orders_paused_by_customer on orders (due_at, held_at) where hold_cause = 'engineering_query'`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists orders_paused_by_customer`.execute(db);
}
