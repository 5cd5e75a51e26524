import { sql, type Kysely } from 'kysely';

// Frozen. Orders by lateness, worst first, read from indexes for every kind of order (see
// src/orders/list.ts): delivered orders by how late they were delivered, cancelled ones last.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index orders_delivered_lateness on orders ((delivered_at - due_at) desc, id) where status = 'delivered'`.execute(db);
  await sql`create index orders_cancelled on orders (id) where status = 'cancelled'`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists orders_cancelled`.execute(db);
  await sql`drop index if exists orders_delivered_lateness`.execute(db);
}
