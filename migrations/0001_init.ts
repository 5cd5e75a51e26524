import { sql, type Kysely } from 'kysely';

// Frozen: never edit a migration that has shipped; add the next one.
// Plain SQL, one statement per entry, so the same text runs on Postgres and on PGlite.
const statements = [
  `create table customers (
     id uuid primary key default gen_random_uuid(),
     name text not null,
     country char(2) not null,
     created_at timestamptz not null default now()
   )`,
  `create table engineers (
     id uuid primary key default gen_random_uuid(),
     customer_id uuid not null references customers (id),
     name text not null,
     email text not null,
     created_at timestamptz not null default now()
   )`,
  `create unique index engineers_customer_email on engineers (customer_id, lower(email))`,
  `create table factories (
     id uuid primary key default gen_random_uuid(),
     name text not null,
     kind text not null check (kind in ('fabrication', 'assembly', 'components', 'testing', 'logistics')),
     country char(2) not null,
     timezone text not null default 'UTC',
     created_at timestamptz not null default now()
   )`,
  // The key itself is never stored: only a SHA-256 of its secret part, compared in constant time.
  `create table api_keys (
     id uuid primary key default gen_random_uuid(),
     factory_id uuid not null references factories (id),
     label text,
     secret_hash bytea not null,
     created_at timestamptz not null default now(),
     revoked_at timestamptz
   )`,
  `create index api_keys_factory on api_keys (factory_id)`,
  // The projection of an order's events, updated in the same transaction as each append.
  // at_risk_at: the instant at which the projected completion passes the promise if nothing else
  // happens (see src/orders/projection.ts), so "at risk now" is an indexable comparison with now().
  `create table orders (
     id uuid primary key default gen_random_uuid(),
     external_ref text,
     customer_id uuid not null references customers (id),
     customer_country char(2) not null,
     engineer_id uuid references engineers (id),
     product text not null,
     quantity integer not null check (quantity > 0),
     status text not null default 'open'
       check (status in ('open', 'on_hold', 'shipped', 'delivered', 'cancelled')),
     current_stages text[] not null default '{}',
     progress real not null default 0,
     promised_at timestamptz not null,
     projection_lead_minutes integer,
     projection_floor_at timestamptz,
     at_risk_at timestamptz,
     hold_cause text,
     held_at timestamptz,
     shipped_at timestamptz,
     delivered_at timestamptz,
     cancelled_at timestamptz,
     last_event_at timestamptz not null default now(),
     last_seq integer not null default 0,
     created_at timestamptz not null default now(),
     updated_at timestamptz not null default now()
   )`,
  `create index orders_customer on orders (customer_id, promised_at, id)`,
  `create index orders_promised on orders (promised_at, id)`,
  `create index orders_updated on orders (updated_at, id)`,
  `create index orders_unfinished_promised on orders (promised_at, id)
     where status in ('open', 'on_hold', 'shipped')`,
  `create index orders_unfinished_at_risk on orders (at_risk_at)
     where status in ('open', 'on_hold', 'shipped')`,
  `create index orders_current_stages on orders using gin (current_stages)`,
  `create unique index orders_customer_external_ref on orders (customer_id, external_ref)
     where external_ref is not null`,
  `create table order_steps (
     order_id uuid not null references orders (id),
     position smallint not null,
     stage text not null,
     factory_id uuid not null references factories (id),
     planned_hours double precision not null,
     after text[] not null,
     planned_start timestamptz not null,
     planned_end timestamptz not null,
     status text not null default 'pending' check (status in ('pending', 'in_progress', 'done')),
     progress real not null default 0,
     started_at timestamptz,
     completed_at timestamptz,
     primary key (order_id, position),
     unique (order_id, stage)
   )`,
  `create index order_steps_factory on order_steps (factory_id, order_id)`,
  // The event log. pos orders rows of one transaction; txid (the writing transaction's id) orders
  // transactions, and streams read only below the oldest running transaction, so the cursor
  // (txid, pos) never lets an event appear behind one a reader has already passed.
  `create table events (
     pos bigint generated always as identity primary key,
     id uuid not null unique default gen_random_uuid(),
     txid xid8 not null default pg_current_xact_id(),
     order_id uuid not null references orders (id),
     customer_id uuid not null,
     seq integer not null,
     type text not null,
     stage text,
     factory_id uuid,
     actor text not null,
     occurred_at timestamptz not null,
     recorded_at timestamptz not null default now(),
     data jsonb not null default '{}',
     unique (order_id, seq)
   )`,
  `create index events_cursor on events (txid, pos)`,
  `create index events_customer_cursor on events (customer_id, txid, pos)`,
  `create table idempotency_keys (
     scope text not null,
     key text not null,
     request_hash text not null,
     resource_id uuid not null,
     created_at timestamptz not null default now(),
     primary key (scope, key)
   )`,
  `create index idempotency_keys_created on idempotency_keys (created_at)`,
];

export async function up(db: Kysely<any>): Promise<void> {
  for (const statement of statements) await sql.raw(statement).execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of ['idempotency_keys', 'events', 'order_steps', 'orders', 'api_keys', 'factories', 'engineers', 'customers']) {
    await sql.raw(`drop table if exists ${table}`).execute(db);
  }
}
