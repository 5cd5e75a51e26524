import type { Migration } from 'kysely/migration';
import * as m0001 from './0001_init.js';
import * as m0002 from './0002_alerts.js';
import * as m0003 from './0003_ops.js';
import * as m0004 from './0004_due_at.js';
import * as m0005 from './0005_paused_orders.js';
import * as m0006 from './0006_kpi_rollups.js';
import * as m0007 from './0007_lateness_order.js';
import * as m0008 from './0008_time_counts.js';
import * as m0009 from './0009_append_guard.js';
import * as m0010 from './0010_moved_promises.js';
import * as m0011 from './0011_paused_unfinished.js';
import * as m0012 from './0012_orders_vacuumed_often.js';
import * as m0013 from './0013_one_at_risk_index.js';
import * as m0014 from './0014_steps_room_to_update.js';
import * as m0015 from './0015_paused_at_risk.js';
import * as m0016 from './0016_risk_from_counted_alone.js';
import * as m0017 from './0017_moved_promises_at_risk.js';

/** Every migration, by name; names sort in the order they apply. Add new ones at the end. */
export const migrations: Record<string, Migration> = {
  '0001_init': m0001,
  '0002_alerts': m0002,
  '0003_ops': m0003,
  '0004_due_at': m0004,
  '0005_paused_orders': m0005,
  '0006_kpi_rollups': m0006,
  '0007_lateness_order': m0007,
  '0008_time_counts': m0008,
  '0009_append_guard': m0009,
  '0010_moved_promises': m0010,
  '0011_paused_unfinished': m0011,
  '0012_orders_vacuumed_often': m0012,
  '0013_one_at_risk_index': m0013,
  '0014_steps_room_to_update': m0014,
  '0015_paused_at_risk': m0015,
  '0016_risk_from_counted_alone': m0016,
  '0017_moved_promises_at_risk': m0017,
};
