import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/database.js';
import { freshDatabase } from './helpers/app.js';
import { ON_REAL_POSTGRES } from './helpers/env.js';

// Values come back the same on both engines; timestamps are read by a fast path of our own on the
// real Postgres (db/database.ts), which must agree with the generic parser on every form Postgres writes.

let fresh: Awaited<ReturnType<typeof freshDatabase>>;
let database: Database;
beforeAll(async () => {
  fresh = await freshDatabase();
  database = fresh.database;
});
afterAll(() => fresh?.drop());

/** Reads `literal`::timestamptz in a session of time zone `zone`. */
async function timestampIn(zone: string, literal: string): Promise<Date> {
  return database.db.transaction().execute(async (tx) => {
    await sql`select set_config('TimeZone', ${zone}, true)`.execute(tx);
    const { rows } = await sql<{ t: Date }>`select ${literal}::timestamptz as t`.execute(tx);
    return rows[0]!.t;
  });
}

describe('timestamptz', () => {
  const cases: Array<[zone: string, literal: string, iso: string]> = [
    ['UTC', '2026-11-29 08:49:18.123456+00', '2026-11-29T08:49:18.123Z'],
    ['UTC', '2026-01-02 03:04:05+00', '2026-01-02T03:04:05.000Z'],
    ['UTC', '2026-01-02 03:04:05.5+00', '2026-01-02T03:04:05.500Z'],
    ['Asia/Kolkata', '2026-01-02 03:04:05.25+05:30', '2026-01-02T03:04:05.250+05:30'],
    ['America/Los_Angeles', '1999-12-31 23:59:59.999-08', '1999-12-31T23:59:59.999-08:00'],
    ['Asia/Shanghai', '2026-07-01 00:00:00+08', '2026-06-30T16:00:00.000Z'],
    // Forms the fast path leaves to pg's generic parser. (The embedded engine's own parser reads
    // them wrong: year 99 as 1999, BC as NaN. No order carries such a date.)
    ...(ON_REAL_POSTGRES
      ? ([
          ['UTC', '0099-03-04 05:06:07+00', '0099-03-04T05:06:07.000Z'],
          ['UTC', '0044-03-15 12:00:00+00 BC', '-000043-03-15T12:00:00.000Z'],
          // Liberia kept -00:44:30 until 1972: an offset with seconds.
          ['Africa/Monrovia', '1970-01-01 00:00:00', '1970-01-01T00:44:30.000Z'],
          ['UTC', '2026-11-29 08:49:18.1234567+00', '2026-11-29T08:49:18.123Z'],
        ] as Array<[string, string, string]>)
      : []),
  ];
  it.each(cases)('in %s, %s is %s', async (zone, literal, iso) => {
    const t = await timestampIn(zone, literal);
    expect(t).toBeInstanceOf(Date);
    expect(t.getTime()).toBe(new Date(iso).getTime());
  });

  it('agree with the epoch Postgres reports, for 2,000 random instants in each of four zones', async () => {
    // Before 1973 these zones had offsets with seconds, which the embedded engine's own parser misreads.
    const from = ON_REAL_POSTGRES ? '1900-01-01 UTC' : '1973-01-01 UTC';
    for (const zone of ['UTC', 'Asia/Kolkata', 'America/St_Johns', 'Africa/Monrovia']) {
      const rows = await database.db.transaction().execute(async (tx) => {
        await sql`select set_config('TimeZone', ${zone}, true)`.execute(tx);
        return (
          await sql<{ t: Date; ms: string }>`
            select t, (extract(epoch from date_trunc('milliseconds', t)) * 1000)::bigint::text as ms
            from (select ${from}::timestamptz + random() * interval '200 years' as t from generate_series(1, 2000)) r`.execute(tx)
        ).rows;
      });
      const wrong = rows.filter((r) => r.t.getTime() !== Number(r.ms));
      expect(wrong.slice(0, 3), zone).toEqual([]);
    }
  });

  it('infinity stays infinite, as pg gives it', async () => {
    const t = (await timestampIn('UTC', 'infinity')) as unknown;
    expect(t === Infinity || (t instanceof Date && Number.isNaN(t.getTime())) || t === 'infinity').toBe(true);
  });
});
