import { sql, type Kysely } from 'kysely';

// Frozen. What ops queries need: the other signals of DOMAIN.md as maintained instants (like
// at_risk_at: the moment the signal turns on if nothing happens), and indexes for the KPIs.
const statements = [
  // The earliest moment an in-progress step passes its planned hours (stage overrun).
  `alter table orders add column overrun_at timestamptz`,
  // The earliest planned start of a step that could start (predecessors done) but has not.
  `alter table orders add column late_start_at timestamptz`,
  `create index orders_unfinished_overrun on orders (overrun_at) where status in ('open', 'on_hold', 'shipped')`,
  `create index orders_unfinished_late_start on orders (late_start_at) where status in ('open', 'on_hold', 'shipped')`,
  `create index orders_open_last_event on orders (last_event_at) where status = 'open'`,
  `create index orders_delivered on orders (delivered_at) where status = 'delivered'`,
  `create index orders_unfinished_country on orders (customer_country) where status in ('open', 'on_hold', 'shipped')`,
  `create index order_steps_completed on order_steps (completed_at) include (factory_id, stage, planned_hours, started_at)
     where completed_at is not null`,
  `create index order_steps_factory_completed on order_steps (factory_id, completed_at) where completed_at is not null`,
  `create index order_steps_in_progress on order_steps (factory_id) where status = 'in_progress'`,
  `create index events_factory_recorded on events (factory_id, recorded_at) where factory_id is not null`,
];

export async function up(db: Kysely<any>): Promise<void> {
  for (const statement of statements) await sql.raw(statement).execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const index of ['events_factory_recorded', 'order_steps_in_progress', 'order_steps_factory_completed', 'order_steps_completed', 'orders_unfinished_country', 'orders_delivered', 'orders_open_last_event', 'orders_unfinished_late_start', 'orders_unfinished_overrun']) {
    await sql.raw(`drop index if exists ${index}`).execute(db);
  }
  await sql.raw('alter table orders drop column late_start_at, drop column overrun_at').execute(db);
}
