import { sql, type Kysely } from 'kysely';
import type { DB } from '../db/schema.js';
import { notFound } from '../http/problems.js';
import type { Performance, Summary } from './schemas.js';

const HOUR = 3_600_000;
const round = (v: unknown, digits = 3) => (v === null || v === undefined ? null : Math.round(Number(v) * 10 ** digits) / 10 ** digits);

// Stage timing, the same everywhere: dwell = completion - start, on time = dwell within plan.
const dwellHours = sql`extract(epoch from (s.completed_at - s.started_at)) / 3600`;
const onTime = sql`(${dwellHours} <= s.planned_hours)::int`;
const delay = sql`greatest(0, ${dwellHours} - s.planned_hours)`;

/** The network at a glance, as of `now`, with delivery and factory figures over the window. */
export async function summary(db: Kysely<DB>, o: { now: Date; windowHours: number; window: string; silentAfterHours: number }): Promise<Summary> {
  const start = new Date(o.now.getTime() - o.windowHours * HOUR);
  const silentBefore = new Date(o.now.getTime() - o.silentAfterHours * HOUR);
  const [counts, delivered, wip, factories, countries] = await Promise.all([
    sql<Record<string, number>>`
      select count(*) filter (where status = 'open')::int as open,
             count(*) filter (where status = 'on_hold')::int as on_hold,
             count(*) filter (where status = 'shipped')::int as in_transit,
             count(*) filter (where due_at < ${o.now} and (hold_cause is distinct from 'engineering_query' or held_at > due_at))::int as late,
             count(*) filter (where at_risk_at < ${o.now} and due_at >= ${o.now})::int as at_risk,
             count(*) filter (where status = 'open' and last_event_at < ${silentBefore})::int as silent,
             count(*) filter (where overrun_at < ${o.now})::int as overrun,
             count(*) filter (where late_start_at < ${o.now})::int as late_start
      from orders where status in ('open', 'on_hold', 'shipped')`.execute(db),
    sql<{ count: number; on_time: number; p50: number | null; p90: number | null }>`
      select count(*)::int as count, count(*) filter (where delivered_at <= due_at)::int as on_time,
             percentile_cont(0.5) within group (order by extract(epoch from delivered_at - created_at) / 3600) as p50,
             percentile_cont(0.9) within group (order by extract(epoch from delivered_at - created_at) / 3600) as p90
      from orders where status = 'delivered' and delivered_at >= ${start} and delivered_at <= ${o.now}`.execute(db),
    sql<{ stage: string; orders: number }>`
      select stage, count(*)::int as orders from orders, unnest(current_stages) as stage
      where status in ('open', 'on_hold', 'shipped') group by stage order by orders desc, stage`.execute(db),
    sql<{ factory_id: string; name: string; country: string; completed: number; on_time: number | null; delay: number | null; wip: number }>`
      select s.factory_id, f.name, f.country, count(*)::int as completed, avg(${onTime}) as on_time, avg(${delay}) as delay,
             (select count(*)::int from order_steps w where w.factory_id = s.factory_id and w.status = 'in_progress') as wip
      from order_steps s join factories f on f.id = s.factory_id
      where s.completed_at >= ${start} and s.completed_at <= ${o.now}
      group by s.factory_id, f.name, f.country
      order by on_time asc, completed desc limit 10`.execute(db),
    sql<{ country: string; open_orders: number }>`
      select customer_country as country, count(*)::int as open_orders from orders
      where status in ('open', 'on_hold', 'shipped') group by 1 order by 2 desc, 1 limit 50`.execute(db),
  ]);
  const c = counts.rows[0]!;
  const d = delivered.rows[0]!;
  return {
    asOf: o.now.toISOString(),
    window: o.window,
    orders: {
      open: c.open!,
      onHold: c.on_hold!,
      inTransit: c.in_transit!,
      late: c.late!,
      atRisk: c.at_risk!,
      silent: c.silent!,
      overrun: c.overrun!,
      lateStart: c.late_start!,
    },
    delivered: {
      count: d.count,
      onTime: d.on_time,
      onTimeRate: d.count ? round(d.on_time / d.count, 4) : null,
      leadTimeHours: { p50: round(d.p50, 2), p90: round(d.p90, 2) },
    },
    wipByStage: wip.rows,
    factories: factories.rows.map((f) => ({
      factoryId: f.factory_id,
      name: f.name,
      country: f.country,
      stagesCompleted: f.completed,
      onTimeRate: round(f.on_time, 4),
      averageDelayHours: round(f.delay, 2),
      wip: f.wip,
    })),
    customersByCountry: countries.rows.map((r) => ({ country: r.country, openOrders: r.open_orders })),
  };
}

/** One factory over the window: its stages on time, their dwell against plan, holds, quality, WIP. */
export async function factoryPerformance(
  db: Kysely<DB>,
  factoryId: string,
  o: { now: Date; windowHours: number; window: string },
): Promise<Performance> {
  const factory = await db.selectFrom('factories').select(['id', 'name']).where('id', '=', factoryId).executeTakeFirst();
  if (!factory) throw notFound('factory');
  const start = new Date(o.now.getTime() - o.windowHours * HOUR);
  const [stages, events, wip] = await Promise.all([
    sql<{ stage: string; completed: number; on_time: number | null; delay: number | null; planned: number | null; p50: number | null; p90: number | null }>`
      select s.stage, count(*)::int as completed, avg(${onTime}) as on_time, avg(${delay}) as delay, avg(s.planned_hours) as planned,
             percentile_cont(0.5) within group (order by ${dwellHours}) as p50,
             percentile_cont(0.9) within group (order by ${dwellHours}) as p90
      from order_steps s
      where s.factory_id = ${factoryId} and s.completed_at >= ${start} and s.completed_at <= ${o.now}
      group by s.stage order by s.stage`.execute(db),
    sql<{ holds: number; quality: number; scrap: number | null }>`
      select count(*) filter (where type = 'hold' and coalesce(data->>'cause', 'other') <> 'engineering_query')::int as holds,
             count(*) filter (where type = 'quality_issue')::int as quality,
             sum(case when type in ('quality_issue', 'stage_progress', 'stage_completed') and jsonb_typeof(data->'quantityScrap') = 'number'
                      then (data->>'quantityScrap')::numeric else 0 end) as scrap
      from events where factory_id = ${factoryId} and recorded_at >= ${start} and recorded_at <= ${o.now}`.execute(db),
    sql<{ n: number }>`select count(*)::int as n from order_steps where factory_id = ${factoryId} and status = 'in_progress'`.execute(db),
  ]);
  const total = stages.rows.reduce((s, r) => s + r.completed, 0);
  const weighted = (key: 'on_time' | 'delay') =>
    total ? stages.rows.reduce((s, r) => s + Number(r[key] ?? 0) * r.completed, 0) / total : null;
  const e = events.rows[0]!;
  return {
    factoryId,
    name: factory.name,
    window: o.window,
    stagesCompleted: total,
    onTimeRate: round(weighted('on_time'), 4),
    averageDelayHours: round(weighted('delay'), 2),
    holds: e.holds,
    qualityIssues: e.quality,
    scrap: Number(e.scrap ?? 0),
    wip: wip.rows[0]!.n,
    stages: stages.rows.map((r) => ({
      stage: r.stage,
      completed: r.completed,
      onTimeRate: round(r.on_time, 4),
      plannedHours: round(r.planned, 2),
      dwellHours: { p50: round(r.p50, 2), p90: round(r.p90, 2) },
    })),
  };
}
