import { sql, type Kysely } from 'kysely';

// Frozen. Alerts raised by time (became_at_risk, became_late) are raised once per transition:
// these flags remember that the current transition was announced.
const statements = [
  `alter table orders add column at_risk_alerted boolean not null default false`,
  `alter table orders add column late_alerted boolean not null default false`,
  `create index orders_late_unalerted on orders (promised_at)
     where status in ('open', 'on_hold', 'shipped') and not late_alerted`,
  `create index orders_at_risk_unalerted on orders (at_risk_at)
     where status in ('open', 'on_hold', 'shipped') and not at_risk_alerted`,
];

export async function up(db: Kysely<any>): Promise<void> {
  for (const statement of statements) await sql.raw(statement).execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql.raw('drop index if exists orders_at_risk_unalerted').execute(db);
  await sql.raw('drop index if exists orders_late_unalerted').execute(db);
  await sql.raw('alter table orders drop column late_alerted, drop column at_risk_alerted').execute(db);
}
