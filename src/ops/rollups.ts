import { sql, type Kysely, type Transaction } from 'kysely';
import type { DB } from '../db/schema.js';
import { dayOf } from './facts.js';
import { bucketOf } from './histogram.js';

/** The league windows kept up to date, in whole days before today (today is always included). */
export const LEAGUE_WINDOWS = [1, 7, 30] as const;
// (class, id) of the advisory lock that lets one instance at a time fold the facts.
const ROLLUP_LOCK = [74, 3] as const;
const DAY = 86_400_000;

/** The first day of a window of `days` whole days before `now`'s day, plus that day so far. */
export const windowStart = (now: Date, days: number) => dayOf(new Date(now.getTime() - days * DAY));

type Sum = { completed: number; on_time: number; delay_hours: number };
const add = <K>(map: Map<K, Sum>, key: K, s: Sum) => {
  const t = map.get(key) ?? { completed: 0, on_time: 0, delay_hours: 0 };
  t.completed += s.completed;
  t.on_time += s.on_time;
  t.delay_hours += s.delay_hours;
  map.set(key, t);
};

/** Rows per upsert, under Postgres's 65,535 parameters per statement. */
const chunks = <T>(rows: T[], size = 5000) =>
  Array.from({ length: Math.ceil(rows.length / size) }, (_, i) => rows.slice(i * size, (i + 1) * size));

/**
 * Folds up to `limit` recorded facts into the rollups, in one transaction with their deletion,
 * so a reader that adds the remaining facts to the rollups counts each fact exactly once.
 * Returns how many facts were folded (0 also when another instance holds the lock).
 */
export async function foldFacts(db: Kysely<DB>, now = new Date(), limit = 20_000): Promise<number> {
  return db.transaction().execute(async (tx) => {
    const { rows: lock } = await sql<{
      locked: boolean;
    }>`select pg_try_advisory_xact_lock(${ROLLUP_LOCK[0]}, ${ROLLUP_LOCK[1]}) as locked`.execute(tx);
    if (!lock[0]?.locked) return 0;
    const { rows: facts } = await sql<{
      kind: string;
      key: string;
      day: string | null;
      n: number;
      hours: number | null;
      planned_hours: number | null;
      on_time: boolean | null;
    }>`
      delete from kpi_facts where id in (select id from kpi_facts order by id limit ${limit})
      returning kind, key, day::text as day, n, hours, planned_hours, on_time`.execute(tx);

    const counts = new Map<string, number>();
    const deliveries = new Map<string, { delivered: number; on_time: number }>();
    const buckets = new Map<string, number>();
    const factoryDays = new Map<string, Sum>();
    for (const f of facts) {
      if (f.kind === 'count') counts.set(f.key, (counts.get(f.key) ?? 0) + f.n);
      else if (f.kind === 'delivered') {
        const d = deliveries.get(f.day!) ?? { delivered: 0, on_time: 0 };
        d.delivered += 1;
        d.on_time += f.on_time ? 1 : 0;
        deliveries.set(f.day!, d);
        const b = `${f.day}|${bucketOf(f.hours!)}`;
        buckets.set(b, (buckets.get(b) ?? 0) + 1);
      } else {
        add(factoryDays, `${f.key}|${f.day}`, {
          completed: 1,
          on_time: f.on_time ? 1 : 0,
          delay_hours: Math.max(0, f.hours! - f.planned_hours!),
        });
      }
    }

    for (const rows of chunks([...counts].filter(([, n]) => n !== 0))) {
      await tx
        .insertInto('order_counts')
        .values(rows.map(([key, n]) => ({ key, n })))
        .onConflict((oc) => oc.column('key').doUpdateSet({ n: sql`order_counts.n + excluded.n` }))
        .execute();
    }
    for (const rows of chunks([...deliveries])) {
      await tx
        .insertInto('delivery_days')
        .values(rows.map(([day, d]) => ({ day, ...d })))
        .onConflict((oc) =>
          oc.column('day').doUpdateSet({
            delivered: sql`delivery_days.delivered + excluded.delivered`,
            on_time: sql`delivery_days.on_time + excluded.on_time`,
          }),
        )
        .execute();
    }
    for (const rows of chunks([...buckets])) {
      await tx
        .insertInto('delivery_lead_buckets')
        .values(rows.map(([k, n]) => ({ day: k.split('|')[0]!, bucket: Number(k.split('|')[1]), n })))
        .onConflict((oc) => oc.columns(['day', 'bucket']).doUpdateSet({ n: sql`delivery_lead_buckets.n + excluded.n` }))
        .execute();
    }
    const sumUpdate = (table: 'factory_days' | 'factory_league') => ({
      completed: sql<number>`${sql.ref(`${table}.completed`)} + excluded.completed`,
      on_time: sql<number>`${sql.ref(`${table}.on_time`)} + excluded.on_time`,
      delay_hours: sql<number>`${sql.ref(`${table}.delay_hours`)} + excluded.delay_hours`,
    });
    for (const rows of chunks([...factoryDays])) {
      await tx
        .insertInto('factory_days')
        .values(rows.map(([k, s]) => ({ factory_id: k.split('|')[0]!, day: k.split('|')[1]!, ...s })))
        .onConflict((oc) => oc.columns(['factory_id', 'day']).doUpdateSet(sumUpdate('factory_days')))
        .execute();
    }

    // The league: a window whose first day moved is recounted from factory_days (once a day);
    // otherwise the new completions inside it are added.
    const fresh = await refreshLeague(tx, now);
    for (const days of LEAGUE_WINDOWS) {
      if (fresh.has(days)) continue;
      const since = windowStart(now, days);
      const inside = new Map<string, Sum>();
      for (const [k, s] of factoryDays) if (k.split('|')[1]! >= since) add(inside, k.split('|')[0]!, s);
      for (const rows of chunks([...inside])) {
        await tx
          .insertInto('factory_league')
          .values(rows.map(([factory_id, s]) => ({ window_days: days, factory_id, ...s })))
          .onConflict((oc) => oc.columns(['window_days', 'factory_id']).doUpdateSet(sumUpdate('factory_league')))
          .execute();
      }
    }
    return facts.length;
  });
}

/** Recounts each league window whose first day is not today's: returns the windows recounted. */
async function refreshLeague(tx: Transaction<DB>, now: Date): Promise<Set<number>> {
  const current = new Map(
    (
      await tx
        .selectFrom('league_windows')
        .select(['window_days', sql<string>`since::text`.as('since')])
        .execute()
    ).map((r) => [r.window_days, r.since]),
  );
  const recounted = new Set<number>();
  for (const days of LEAGUE_WINDOWS) {
    const since = windowStart(now, days);
    if (current.get(days) === since) continue;
    await tx.deleteFrom('factory_league').where('window_days', '=', days).execute();
    await sql`insert into factory_league (window_days, factory_id, completed, on_time, delay_hours)
      select ${days}, factory_id, sum(completed), sum(on_time), sum(delay_hours) from factory_days
      where day >= ${since}::date group by factory_id`.execute(tx);
    await tx
      .insertInto('league_windows')
      .values({ window_days: days, since })
      .onConflict((oc) => oc.column('window_days').doUpdateSet({ since }))
      .execute();
    recounted.add(days);
  }
  return recounted;
}

/**
 * Counts every rollup again from the orders and their steps, dropping the facts: after a bulk
 * load (the world generator) or to repair. Takes the fold lock, so no fold runs meanwhile.
 */
export async function rebuildRollups(db: Kysely<DB>, now = new Date()): Promise<void> {
  await db.transaction().execute(async (tx) => {
    await sql`select pg_advisory_xact_lock(${ROLLUP_LOCK[0]}, ${ROLLUP_LOCK[1]})`.execute(tx);
    for (const table of [
      'kpi_facts',
      'order_counts',
      'delivery_days',
      'delivery_lead_buckets',
      'factory_days',
      'factory_league',
      'league_windows',
    ]) {
      await sql`delete from ${sql.table(table)}`.execute(tx);
    }
    // The same keys as facts.ts's keysOf (hours as hourOf gives them).
    await sql`insert into order_counts (key, n)
      select key, count(*) from orders o,
        lateral (select 'status:' || o.status union all select 'country:' || o.customer_country
                 union all select 'stage:' || s from unnest(o.current_stages) as s
                 union all select 'due:' || to_char(o.due_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24')
                 union all select 'risk:' || to_char(least(o.at_risk_at, o.due_at) at time zone 'UTC', 'YYYY-MM-DD"T"HH24')
                 union all select 'overrun:' || to_char(o.overrun_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24') where o.overrun_at is not null
                ) as k(key)
      where o.status in ('open', 'on_hold', 'shipped') group by key`.execute(tx);
    await sql`insert into delivery_days (day, delivered, on_time)
      select (delivered_at at time zone 'UTC')::date, count(*), count(*) filter (where delivered_at <= due_at)
      from orders where status = 'delivered' group by 1`.execute(tx);
    // The same buckets as histogram.ts's bucketOf, in SQL.
    await sql`insert into delivery_lead_buckets (day, bucket, n)
      select (delivered_at at time zone 'UTC')::date,
             least(400, greatest(0, floor(ln(greatest(extract(epoch from delivered_at - created_at) / 3600, 0.01) / 0.01) / ln(1.05))))::smallint,
             count(*)
      from orders where status = 'delivered' group by 1, 2`.execute(tx);
    await sql`insert into factory_days (factory_id, day, completed, on_time, delay_hours)
      select factory_id, (completed_at at time zone 'UTC')::date, count(*),
             count(*) filter (where extract(epoch from completed_at - coalesce(started_at, completed_at)) / 3600 <= planned_hours),
             sum(greatest(0, extract(epoch from completed_at - coalesce(started_at, completed_at)) / 3600 - planned_hours))
      from order_steps where status = 'done' and completed_at is not null group by 1, 2`.execute(tx);
    await refreshLeague(tx, now);
  });
}
