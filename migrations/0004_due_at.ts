import { sql, type Kysely } from 'kysely';

// Frozen. A hold caused by the customer (an engineering query) pauses the promise clock: due_at
// is the promised date moved by the time the order waited on the customer. Late, at risk and
// on-time delivery are judged against it; promised_at stays what was promised.
const statements = [
  `alter table orders add column due_at timestamptz`,
  `update orders set due_at = promised_at`,
  `alter table orders alter column due_at set not null`,
  `create index orders_unfinished_due on orders (due_at, id) where status in ('open', 'on_hold', 'shipped')`,
  `drop index orders_late_unalerted`,
  `create index orders_late_unalerted on orders (due_at) where status in ('open', 'on_hold', 'shipped') and not late_alerted`,
];

export async function up(db: Kysely<any>): Promise<void> {
  for (const statement of statements) await sql.raw(statement).execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql.raw('drop index if exists orders_unfinished_due').execute(db);
  await sql.raw('alter table orders drop column due_at').execute(db);
}
