import { sql, type Kysely } from 'kysely';
import type { DB } from '../db/schema.js';
import { notFound } from '../http/problems.js';
import { hourOf } from './facts.js';
import { bucketOf, percentile } from './histogram.js';
import { LEAGUE_WINDOWS, windowStart } from './rollups.js';
import type { Performance, Summary } from './schemas.js';

const HOUR = 3_600_000;
const round = (v: unknown, digits = 3) =>
  v === null || v === undefined ? null : Math.round(Number(v) * 10 ** digits) / 10 ** digits;

// Stage timing, the same everywhere: dwell = completion - start, on time = dwell within plan.
const dwellHours = sql`extract(epoch from (s.completed_at - s.started_at)) / 3600`;
const onTime = sql`(${dwellHours} <= s.planned_hours)::int`;
const delay = sql`greatest(0, ${dwellHours} - s.planned_hours)`;

type LeagueRow = { factory_id: string; name: string; country: string; completed: number; on_time: number; delay_hours: number };

/**
 * The worst factories of a window, lowest on-time stage rate first: from the league the fold
 * job keeps for the usual windows (an index read), else summed from the daily rollup.
 */
async function worstFactories(db: Kysely<DB>, days: number, since: string): Promise<LeagueRow[]> {
  const { rows } = (LEAGUE_WINDOWS as readonly number[]).includes(days)
    ? await sql<LeagueRow>`
        select l.factory_id, f.name, f.country, l.completed, l.on_time, l.delay_hours
        from factory_league l join factories f on f.id = l.factory_id
        where l.window_days = ${days} and l.completed > 0
        order by (l.on_time::float8 / l.completed), l.completed desc, l.factory_id limit 10`.execute(db)
    : await sql<LeagueRow>`
        select d.factory_id, f.name, f.country, d.completed, d.on_time, d.delay_hours
        from (select factory_id, sum(completed)::int as completed, sum(on_time)::int as on_time, sum(delay_hours) as delay_hours
              from factory_days where day >= ${since}::date group by factory_id) d
        join factories f on f.id = d.factory_id
        where d.completed > 0 order by (d.on_time::float8 / d.completed), d.completed desc, d.factory_id limit 10`.execute(db);
  return rows;
}

/**
 * What the summary counts from the orders themselves as of `now`: late, at risk and overrun in
 * the hour in progress (since `hour`; the hours before come from buckets), the orders paused
 * late, silent and late to start. Each is read from its partial index, counted without the rows.
 */
export const liveCounts = (o: { now: Date; hour: Date; silentBefore: Date }) => sql<Record<string, number>>`
  select (select count(*) from orders where status in ('open', 'on_hold', 'shipped') and due_at >= ${o.hour} and due_at < ${o.now}) as due,
         (select count(*) from orders where status in ('open', 'on_hold', 'shipped')
            and least(at_risk_at, due_at) >= ${o.hour} and least(at_risk_at, due_at) < ${o.now}) as risk,
         (select count(*) from orders where status in ('open', 'on_hold', 'shipped') and overrun_at >= ${o.hour} and overrun_at < ${o.now}) as overrun,
         (select count(*) from orders where hold_cause = 'engineering_query' and status in ('open', 'on_hold', 'shipped')
            and due_at < ${o.now} and held_at <= due_at) as paused_late,
         (select count(*) from orders where status = 'open' and last_event_at < ${o.silentBefore}) as silent,
         (select count(*) from orders where status in ('open', 'on_hold', 'shipped') and late_start_at < ${o.now}) as late_start`;

/**
 * The network at a glance, as of `now`. Late, at risk and overrun come from maintained hour
 * buckets plus the hour in progress; silent and late start (small sets) are counted from their
 * indexes; everything else is read from the maintained rollups plus the facts not folded into
 * them yet, so it is exact when read. The
 * window counts whole UTC days: the `ceil(hours / 24)` days before today, and today so far.
 */
export async function summary(
  db: Kysely<DB>,
  o: { now: Date; windowHours: number; window: string; silentAfterHours: number },
): Promise<Summary> {
  const days = Math.ceil(o.windowHours / 24);
  const since = windowStart(o.now, days);
  const silentBefore = new Date(o.now.getTime() - o.silentAfterHours * HOUR);
  // Late, at risk and overrun: whole hours before this one from the maintained buckets (keys
  // due:, risk:, overrun: of facts.ts), the hour in progress counted exactly from its indexes.
  const hour = new Date(Math.floor(o.now.getTime() / HOUR) * HOUR);
  const before = (kind: string) => sql`(key > ${`${kind}:`} and key < ${`${kind}:${hourOf(o.now)}`})`;
  const earlier = sql`(${before('due')} or ${before('risk')} or ${before('overrun')})`;
  const [live, hours, counted, delivered, buckets, unfolded, factories] = await Promise.all([
    liveCounts({ now: o.now, hour, silentBefore }).execute(db),
    sql<{ kind: string; n: number }>`
      select split_part(key, ':', 1) as kind, sum(n)::int as n
      from (select key, n from order_counts where ${earlier}
            union all
            select key, n from kpi_facts where kind = 'count' and ${earlier}) t
      group by 1`.execute(db),
    sql<{ key: string; n: number }>`
      select key, sum(n)::int as n from (select key, n from order_counts union all select key, n from kpi_facts where kind = 'count') t
      where split_part(key, ':', 1) in ('status', 'country', 'stage')
      group by key having sum(n) <> 0`.execute(db),
    sql<{ count: number; on_time: number }>`
      select coalesce(sum(delivered), 0)::int as count, coalesce(sum(on_time), 0)::int as on_time from (
        select delivered, on_time from delivery_days where day >= ${since}::date
        union all select 1, on_time::int from kpi_facts where kind = 'delivered' and day >= ${since}::date) t`.execute(db),
    sql<{ bucket: number; n: number }>`
      select bucket, sum(n)::int as n from delivery_lead_buckets where day >= ${since}::date group by bucket`.execute(db),
    sql<{ hours: number }>`select hours from kpi_facts where kind = 'delivered' and day >= ${since}::date`.execute(db),
    worstFactories(db, days, since),
  ]);
  const c = live.rows[0]!;
  const upTo = (kind: string) => (hours.rows.find((r) => r.kind === kind)?.n ?? 0) + Number(c[kind]);
  const count = (key: string) => counted.rows.find((r) => r.key === key)?.n ?? 0;
  const byPrefix = (prefix: string) =>
    counted.rows.filter((r) => r.key.startsWith(prefix) && r.n > 0).map((r) => ({ name: r.key.slice(prefix.length), n: r.n }));
  const leads = new Map(buckets.rows.map((r) => [r.bucket, r.n]));
  for (const { hours } of unfolded.rows) leads.set(bucketOf(hours), (leads.get(bucketOf(hours)) ?? 0) + 1);
  const d = delivered.rows[0]!;
  const wip = factories.length
    ? await sql<{ factory_id: string; n: number }>`
        select factory_id, count(*)::int as n from order_steps
        where status = 'in_progress' and factory_id in (${sql.join(factories.map((f) => f.factory_id))}) group by factory_id`.execute(
        db,
      )
    : { rows: [] };
  return {
    asOf: o.now.toISOString(),
    window: o.window,
    orders: {
      open: count('status:open'),
      onHold: count('status:on_hold'),
      inTransit: count('status:shipped'),
      late: upTo('due') - Number(c.paused_late),
      // From least(at_risk_at, due_at) on an order is at risk or late: less the late ones.
      atRisk: upTo('risk') - upTo('due'),
      silent: Number(c.silent),
      overrun: upTo('overrun'),
      lateStart: Number(c.late_start),
    },
    delivered: {
      count: d.count,
      onTime: d.on_time,
      onTimeRate: d.count ? round(d.on_time / d.count, 4) : null,
      leadTimeHours: { p50: round(percentile(leads, 0.5), 2), p90: round(percentile(leads, 0.9), 2) },
    },
    wipByStage: byPrefix('stage:')
      .sort((a, b) => b.n - a.n || a.name.localeCompare(b.name))
      .map((r) => ({ stage: r.name, orders: r.n })),
    factories: factories.map((f) => ({
      factoryId: f.factory_id,
      name: f.name,
      country: f.country,
      stagesCompleted: f.completed,
      onTimeRate: round(f.on_time / f.completed, 4),
      averageDelayHours: round(f.delay_hours / f.completed, 2),
      wip: wip.rows.find((w) => w.factory_id === f.factory_id)?.n ?? 0,
    })),
    customersByCountry: byPrefix('country:')
      .sort((a, b) => b.n - a.n || a.name.localeCompare(b.name))
      .slice(0, 50)
      .map((r) => ({ country: r.name, openOrders: r.n })),
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
    sql<{
      stage: string;
      completed: number;
      on_time: number | null;
      delay: number | null;
      planned: number | null;
      p50: number | null;
      p90: number | null;
    }>`
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
    sql<{
      n: number;
    }>`select count(*)::int as n from order_steps where factory_id = ${factoryId} and status = 'in_progress'`.execute(db),
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
