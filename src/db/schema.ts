import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely';

// Table types as the database returns them (see database.ts for how values are parsed).
// They stay inside the data layer: services map rows to the API's shapes.

type CreatedAt = ColumnType<Date, Date | string | undefined, never>;
type Timestamp = ColumnType<Date, Date | string, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;

export interface CustomersTable {
  id: Generated<string>;
  name: string;
  country: string;
  created_at: CreatedAt;
}

export interface EngineersTable {
  id: Generated<string>;
  customer_id: string;
  name: string;
  email: string;
  created_at: CreatedAt;
}

export interface FactoriesTable {
  id: Generated<string>;
  name: string;
  kind: string;
  country: string;
  timezone: Generated<string>;
  created_at: CreatedAt;
}

export interface ApiKeysTable {
  id: Generated<string>;
  factory_id: string;
  label: string | null;
  secret_hash: Buffer | Uint8Array;
  created_at: CreatedAt;
  revoked_at: NullableTimestamp;
}

export interface OrdersTable {
  id: Generated<string>;
  external_ref: string | null;
  customer_id: string;
  customer_country: string;
  engineer_id: string | null;
  product: string;
  quantity: number;
  status: Generated<string>;
  current_stages: Generated<string[]>;
  progress: Generated<number>;
  promised_at: Timestamp;
  due_at: Timestamp;
  projection_lead_minutes: number | null;
  projection_floor_at: NullableTimestamp;
  at_risk_at: NullableTimestamp;
  hold_cause: string | null;
  held_at: NullableTimestamp;
  shipped_at: NullableTimestamp;
  delivered_at: NullableTimestamp;
  cancelled_at: NullableTimestamp;
  last_event_at: Timestamp;
  last_seq: Generated<number>;
  created_at: CreatedAt;
  updated_at: Timestamp;
  at_risk_alerted: Generated<boolean>;
  late_alerted: Generated<boolean>;
  overrun_at: NullableTimestamp;
  late_start_at: NullableTimestamp;
}

export interface OrderStepsTable {
  order_id: string;
  position: number;
  stage: string;
  factory_id: string;
  planned_hours: number;
  after: string[];
  planned_start: Timestamp;
  planned_end: Timestamp;
  status: Generated<string>;
  progress: Generated<number>;
  started_at: NullableTimestamp;
  completed_at: NullableTimestamp;
}

export interface EventsTable {
  pos: ColumnType<number, never, never>;
  id: string;
  txid: ColumnType<string, never, never>;
  order_id: string;
  customer_id: string;
  seq: number;
  type: string;
  stage: string | null;
  factory_id: string | null;
  actor: string;
  occurred_at: Timestamp;
  recorded_at: CreatedAt;
  data: ColumnType<Record<string, unknown>, string, string>;
}

export interface IdempotencyKeysTable {
  scope: string;
  key: string;
  request_hash: string;
  resource_id: string;
  created_at: CreatedAt;
}

/** A calendar day (UTC) as 'YYYY-MM-DD': written as text, read back with ::text (never as a Date). */
type Day = ColumnType<string, string, string>;

export interface KpiFactsTable {
  id: Generated<number>;
  kind: 'count' | 'step_done' | 'delivered';
  key: string;
  day: Day | null;
  n: number;
  hours: number | null;
  planned_hours: number | null;
  on_time: boolean | null;
}

export interface OrderCountsTable {
  key: string;
  n: number;
}

export interface DeliveryDaysTable {
  day: Day;
  delivered: number;
  on_time: number;
}

export interface DeliveryLeadBucketsTable {
  day: Day;
  bucket: number;
  n: number;
}

export interface FactoryDaysTable {
  factory_id: string;
  day: Day;
  completed: number;
  on_time: number;
  delay_hours: number;
}

export interface LeagueWindowsTable {
  window_days: number;
  since: Day;
}

export interface FactoryLeagueTable {
  window_days: number;
  factory_id: string;
  completed: number;
  on_time: number;
  delay_hours: number;
}

export interface DB {
  customers: CustomersTable;
  engineers: EngineersTable;
  factories: FactoriesTable;
  api_keys: ApiKeysTable;
  orders: OrdersTable;
  order_steps: OrderStepsTable;
  events: EventsTable;
  idempotency_keys: IdempotencyKeysTable;
  kpi_facts: KpiFactsTable;
  order_counts: OrderCountsTable;
  delivery_days: DeliveryDaysTable;
  delivery_lead_buckets: DeliveryLeadBucketsTable;
  factory_days: FactoryDaysTable;
  league_windows: LeagueWindowsTable;
  factory_league: FactoryLeagueTable;
}

export type OrderRow = Selectable<OrdersTable>;
export type NewOrderRow = Insertable<OrdersTable>;
export type OrderUpdate = Updateable<OrdersTable>;
export type OrderStepRow = Selectable<OrderStepsTable>;
export type EventRow = Selectable<EventsTable>;
