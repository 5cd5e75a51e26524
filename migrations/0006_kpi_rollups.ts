import { sql, type Kysely } from 'kysely';

// Frozen. Maintained rollups for the network KPIs, so that /v1/ops/summary reads a few hundred
// rows whatever the size of the network. Every write that changes a counted figure records a
// fact in kpi_facts, in its own transaction (an insert: no row is shared between writers, so
// no writer waits on another); a job folds the facts into the rollups, and readers add the
// facts not folded yet, so the figures are exact at the moment they are read.
const statements = [
  `create table kpi_facts (
     id bigint generated always as identity primary key,
     kind text not null check (kind in ('count', 'step_done', 'delivered')),
     key text not null,
     day date,
     n integer not null default 1,
     hours double precision,
     planned_hours double precision,
     on_time boolean
   )`,
  // Unfinished orders by status ('status:open'), by current stage ('stage:cam'), by country ('country:DE').
  `create table order_counts (key text primary key, n bigint not null)`,
  // Deliveries by UTC day, with lead times (creation to delivery) in a log histogram for p50/p90.
  `create table delivery_days (day date primary key, delivered integer not null, on_time integer not null)`,
  `create table delivery_lead_buckets (day date not null, bucket smallint not null, n integer not null, primary key (day, bucket))`,
  // Completed stages by factory and UTC day: on time = within planned hours; delay = hours beyond.
  `create table factory_days (
     factory_id uuid not null, day date not null,
     completed integer not null, on_time integer not null, delay_hours double precision not null,
     primary key (factory_id, day)
   )`,
  `create index factory_days_day on factory_days (day)`,
  // The factory league of the usual windows (1, 7, 30 days), kept up to date by the same job.
  `create table league_windows (window_days smallint primary key, since date not null)`,
  `create table factory_league (
     window_days smallint not null, factory_id uuid not null,
     completed integer not null, on_time integer not null, delay_hours double precision not null,
     primary key (window_days, factory_id)
   )`,
  `create index factory_league_worst on factory_league (window_days, (on_time::float8 / completed), completed desc, factory_id) where completed > 0`,
  // The at-risk count reads both dates from the index alone.
  `create index orders_unfinished_at_risk_due on orders (at_risk_at, due_at) where status in ('open', 'on_hold', 'shipped')`,
];

export async function up(db: Kysely<any>): Promise<void> {
  for (const statement of statements) await sql.raw(statement).execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql.raw('drop index if exists orders_unfinished_at_risk_due').execute(db);
  for (const table of ['factory_league', 'league_windows', 'factory_days', 'delivery_lead_buckets', 'delivery_days', 'order_counts', 'kpi_facts']) {
    await sql.raw(`drop table if exists ${table}`).execute(db);
  }
}
