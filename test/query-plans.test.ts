import { CompiledQuery } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Principal } from '../src/auth/principal.js';
import { atRiskCandidates } from '../src/jobs/alerts.js';
import { liveCounts } from '../src/ops/queries.js';
import { listQuery, pageQuery } from '../src/orders/list.js';
import { listOrdersQuery } from '../src/orders/schemas.js';
import { generateWorld, WORLD_SIZES } from '../src/world/generate.js';
import { openDatabase, type Database } from '../src/db/database.js';
import { migrateToLatest } from '../src/db/migrator.js';
import { skipWithoutRealPostgres } from './helpers/env.js';
import { skipWithoutPostgresBinaries, startTempPostgres, type TempPostgres } from './helpers/temp-postgres.js';

// The ops lists must be fast by design: each one is served by an index, whatever the size of
// the network. This reads the planner's choice on a generated world large enough for it to
// prefer indexes, and fails if a list falls back to scanning or sorting every order.

type Plan = {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Index Cond'?: string;
  Filter?: string;
  Plans?: Plan[];
};
const nodes = (p: Plan): Plan[] => [p, ...(p.Plans ?? []).flatMap(nodes)];
/** The nodes below p that no Limit bounds: what a Sort at p would have to sort in full. */
const unboundedReads = (p: Plan): Plan[] =>
  (p.Plans ?? []).flatMap((c) => (c['Node Type'] === 'Limit' ? [] : [c, ...unboundedReads(c)]));

describe.skipIf(skipWithoutRealPostgres() || skipWithoutPostgresBinaries())(
  'query plans of the order lists, and what a step update writes, on a generated world',
  () => {
    // A cluster of its own: loading the world is one long transaction, and every stream of every
    // database of a cluster waits behind the oldest running one (the horizon is cluster-wide), so
    // on the shared cluster it held other test files' live events back for as long as it ran.
    let cluster: TempPostgres;
    let database: Database;
    const ops: Principal = { role: 'ops', sub: 'plans', expiresAt: new Date(Date.now() + 3600_000) };
    let customerId: string;
    /** The busiest customer's portal user (customerId is known once the world is loaded). */
    const customer = (): Principal => ({ role: 'customer', sub: 'c', customerId, expiresAt: new Date(Date.now() + 3600_000) });

    beforeAll(async () => {
      cluster = await startTempPostgres();
      database = await openDatabase({ url: cluster.url, poolSize: 4 });
      await migrateToLatest(database.db);
      await generateWorld(database, { ...WORLD_SIZES.small!, seed: 7 });
      await database.pool!.query('analyze');
      customerId = (await database.pool!.query('select customer_id from orders group by 1 order by count(*) desc limit 1'))
        .rows[0].customer_id;
    }, 120_000);
    afterAll(async () => {
      await database?.close();
      await cluster?.remove();
    });

    /** The plan of a listing as a JSON page runs it (pageQuery), or as the CSV export does (rows). */
    async function plan(principal: Principal, query: Record<string, string>, shape: 'page' | 'rows' = 'page'): Promise<Plan[]> {
      const q = listOrdersQuery.parse(query);
      const listing = listQuery(database.db, principal, q, new Date());
      const compiled = shape === 'page' ? pageQuery(database.db, listing).compile() : listing.query.compile();
      const r = await database.db.executeQuery<{ 'QUERY PLAN': Array<{ Plan: Plan }> }>(
        CompiledQuery.raw(`explain (format json) ${compiled.sql}`, [...compiled.parameters]),
      );
      return nodes(r.rows[0]!['QUERY PLAN'][0]!.Plan);
    }

    /**
     * The generic plan a JSON page of the listing runs with, if the listing is one whose plan its
     * design fixes (listing.fixedPlan: it runs on connections that always use the generic plan);
     * undefined for the others, which Postgres plans for their values.
     */
    async function genericPlan(principal: Principal, query: Record<string, string>): Promise<Plan[] | undefined> {
      const listing = listQuery(database.db, principal, listOrdersQuery.parse(query), new Date());
      if (!listing.fixedPlan) return undefined;
      const compiled = pageQuery(database.db, listing).compile();
      const client = await database.pool!.connect();
      try {
        await client.query('set plan_cache_mode = force_generic_plan');
        await client.query({ name: 'generic_list', text: compiled.sql, values: [...compiled.parameters] });
        const literal = (v: unknown) => client.escapeLiteral(v instanceof Date ? v.toISOString() : String(v));
        const r = await client.query(
          `explain (format json) execute generic_list(${compiled.parameters.map(literal).join(', ')})`,
        );
        return nodes(r.rows[0]['QUERY PLAN'][0].Plan);
      } finally {
        client.release(true); // its prepared statement and setting go with it
      }
    }

    const cases: Array<[string, Principal | 'customer', Record<string, string>, string]> = [
      [
        'late list, worst first',
        ops,
        { late: 'true', status: 'open,on_hold,shipped', sort: '-lateness', limit: '50' },
        'orders_unfinished_due',
      ],
      [
        'late list with delivered orders, worst first',
        ops,
        { late: 'true', sort: '-lateness', limit: '50' },
        'orders_delivered_lateness',
      ],
      ['every order by lateness', ops, { sort: '-lateness', limit: '50' }, 'orders_unfinished_due'],
      ['at-risk list', ops, { atRisk: 'true', sort: 'promisedAt', limit: '50' }, 'orders_'],
      // Worst first (due soonest): read in due order from now on, not every at-risk order sorted.
      ['at-risk list, worst first', ops, { atRisk: 'true', sort: '-lateness', limit: '50' }, 'orders_unfinished_due'],
      ['overrun list', ops, { overrun: 'true', status: 'open,on_hold,shipped', limit: '50' }, 'orders_'],
      ['silent list', ops, { silent: 'true', limit: '50' }, 'orders_'],
      ["a customer's orders", 'customer', { sort: 'promisedAt', limit: '50' }, 'orders_customer'],
      ['recently updated', ops, { sort: '-updatedAt', limit: '50' }, 'orders_updated'],
    ];

    it.each(
      cases.flatMap(([name, ...rest]) =>
        (['page', 'rows'] as const).map((shape) => [`${name} (${shape})`, ...rest, shape] as const),
      ),
    )('%s uses an index, never a scan of every order', async (_name, who, query, index, shape) => {
      const principal = who === 'customer' ? customer() : who;
      const plan1 = await plan(principal, query, shape);
      const scans = plan1.filter((n) => n['Relation Name'] === 'orders');
      expect(scans.length, JSON.stringify(plan1.map((n) => n['Node Type']))).toBeGreaterThan(0);
      for (const s of scans) expect(s['Node Type'], JSON.stringify(plan1)).not.toBe('Seq Scan');
      // An index scan, or a bitmap heap scan fed by bitmap index scans of the orders indexes.
      expect(
        plan1.some((n) => (n['Index Name'] ?? '').startsWith(index)),
        JSON.stringify(plan1),
      ).toBe(true);
    });

    it.each(cases)(
      '%s: with its generic plan too, if it runs with one, an index and no scan of every order',
      async (_name, who, query, index) => {
        const principal = who === 'customer' ? customer() : who;
        const generic = await genericPlan(principal, query);
        if (!generic) return; // planned for its values, as above
        for (const s of generic.filter((n) => n['Relation Name'] === 'orders'))
          expect(s['Node Type'], JSON.stringify(generic)).not.toBe('Seq Scan');
        expect(
          generic.some((n) => (n['Index Name'] ?? '').startsWith(index)),
          JSON.stringify(generic),
        ).toBe(true);
      },
    );

    it('the merged listings without a value to narrow them run with their generic plan; the others are planned for their values', () => {
      const fixed = (principal: Principal, query: Record<string, string>) =>
        listQuery(database.db, principal, listOrdersQuery.parse(query), new Date()).fixedPlan;
      expect(fixed(ops, { late: 'true', sort: '-lateness' })).toBe(true);
      expect(fixed(ops, { atRisk: 'true', sort: '-lateness' })).toBe(true);
      expect(fixed(ops, { atRisk: 'true', sort: 'promisedAt' })).toBe(true);
      expect(fixed(ops, { late: 'true', status: 'open', sort: '-lateness' })).toBe(true);
      // One customer's, one factory's, one country's orders: how many match depends on which.
      expect(fixed(customer(), { late: 'true', sort: '-lateness' })).toBe(false);
      expect(fixed(ops, { late: 'true', sort: '-lateness', customerId })).toBe(false);
      expect(fixed(ops, { late: 'true', sort: '-lateness', country: 'DE' })).toBe(false);
      expect(fixed(ops, { atRisk: 'true', sort: 'promisedAt', product: 'HDI' })).toBe(false);
      // Not a merge of index reads: planned for its values.
      expect(fixed(ops, { sort: 'promisedAt' })).toBe(false);
      expect(fixed(ops, { sort: '-updatedAt' })).toBe(false);
    });

    it('the alert job reads the unalerted at-risk orders from their own index, not every at-risk order', async () => {
      // After a drain every at-risk order is alerted: a read through orders_unfinished_at_risk_due
      // would walk them all, on every tick (jobs/alerts.ts atRiskCandidates).
      const client = await database.pool!.connect();
      try {
        await client.query('begin');
        const alerted = await client.query(`update orders set at_risk_alerted = true
          where status in ('open', 'on_hold', 'shipped') and at_risk_at < now() and due_at >= now()`);
        expect(alerted.rowCount).toBeGreaterThan(0);
        await client.query('analyze orders');
        const q = atRiskCandidates(database.db, new Date(), 100, {}).compile();
        const r = await client.query(`explain (format json) ${q.sql}`, [...q.parameters]);
        const p = nodes(r.rows[0]['QUERY PLAN'][0].Plan);
        expect(
          p.filter((n) => n['Index Name']).map((n) => n['Index Name']),
          JSON.stringify(p),
        ).toEqual(['orders_at_risk_unalerted']);
      } finally {
        await client.query('rollback');
        client.release();
      }
    });

    it('the summary counts the hour in progress from its indexes alone, without fetching the orders', async () => {
      // Each count is an index-only scan of its partial index; an expression index holds the
      // columns of its expression for that (migration 0016): without them, the count of orders at
      // risk since the hour began fetched every one (8.6 ms on 2,000,000 orders).
      const client = await database.pool!.connect();
      try {
        await client.query('vacuum orders'); // index-only scans are chosen where pages are all-visible
        const now = new Date();
        const q = liveCounts({
          now,
          hour: new Date(now.getTime() - 3_600_000),
          silentBefore: new Date(now.getTime() - 86_400_000),
        }).compile(database.db);
        const r = await client.query(`explain (format json) ${q.sql}`, [...q.parameters]);
        const reads = nodes(r.rows[0]['QUERY PLAN'][0].Plan).filter((n) => n['Relation Name'] === 'orders');
        expect(reads.length, JSON.stringify(reads)).toBe(6);
        for (const n of reads) expect(n['Node Type'], JSON.stringify(n)).toBe('Index Only Scan');
        expect(reads.map((n) => n['Index Name'])).toContain('orders_unfinished_risk_from');
      } finally {
        client.release();
      }
    });

    it('a progress update of a step writes no index entry: its page has room for a HOT update', async () => {
      // The append sets every step column it writes (events/repository.ts): here only the
      // progress changes, as in most updates a factory posts. With full pages (fillfactor 100)
      // each such update wrote all six indexes of order_steps (migration 0014).
      const client = await database.pool!.connect();
      try {
        await client.query('begin');
        const updated = await client.query(`
          update order_steps s set status = s.status, progress = least(s.progress + 1, 99), factory_id = s.factory_id,
            started_at = s.started_at, completed_at = s.completed_at
          from (select order_id, min(position) as position from order_steps where status = 'in_progress'
                group by order_id order by order_id limit 200) p
          where s.order_id = p.order_id and s.position = p.position`);
        const { rows } = await client.query(
          `select n_tup_upd::int as updates, n_tup_hot_upd::int as hot from pg_stat_xact_user_tables where relname = 'order_steps'`,
        );
        expect(updated.rowCount).toBe(200);
        expect(rows[0]).toEqual({ updates: 200, hot: 200 });
      } finally {
        await client.query('rollback');
        client.release();
      }
    });

    it.each([
      ['open,on_hold,shipped', ['orders_unfinished_due']],
      [undefined, ['orders_unfinished_due', 'orders_delivered_lateness']],
    ])('the late list (status %s) reads in index order: no sort of all late orders', async (status, indexes) => {
      // A Sort may order the merged pages (a page at most from each kind of order) and the few
      // orders the customer paused, never the late orders read from the indexes.
      const p = await plan(ops, { late: 'true', sort: '-lateness', limit: '50', ...(status ? { status } : {}) });
      const sorts = p.filter((n) => n['Node Type'] === 'Sort');
      for (const s of sorts)
        expect(
          unboundedReads(s).filter((n) => indexes.includes(n['Index Name'] ?? '')),
          JSON.stringify(s),
        ).toEqual([]);
      for (const index of indexes)
        expect(
          p.some((n) => n['Index Name'] === index && n['Node Type'] === 'Index Scan'),
          index,
        ).toBe(true);
      // The orders their customer paused are sorted, but only those past due are read: the due
      // date is a range of their index, not a filter on every paused order (also in the generic plan).
      const generic = await genericPlan(ops, { late: 'true', sort: '-lateness', limit: '50', ...(status ? { status } : {}) });
      for (const plan1 of [p, generic!]) {
        const paused = plan1.filter((n) => n['Index Name'] === 'orders_paused_by_customer');
        expect(paused.length, JSON.stringify(plan1)).toBe(1);
        expect(paused[0]!['Index Cond'], JSON.stringify(paused[0])).toMatch(/due_at </);
      }
    });

    it('the at-risk list by promise date reads the orders whose due date moved at risk from their index, not every one of them', async () => {
      // Orders whose customer's hold moved their due date are read in promise order up to now; at
      // risk is a window between two of their instants, a condition on each index entry with both
      // in the index (migration 0017). As a filter on each one's row, 1,735 rows were fetched for a
      // page of 51 on 2,000,000 orders. This listing runs with its generic plan (fixedPlan); planned
      // for this small world's values, Postgres may take the 11 at-risk orders of
      // orders_unfinished_at_risk_due instead, which is as good here.
      const query = { atRisk: 'true', sort: 'promisedAt', limit: '50' };
      const p = (await genericPlan(ops, query))!;
      const moved = p.filter((n) => n['Index Name'] === 'orders_unfinished_moved_promised');
      expect(moved.length, JSON.stringify(p)).toBe(1);
      expect(moved[0]!['Index Cond'], JSON.stringify(moved[0])).toMatch(/at_risk_at </);
      expect(moved[0]!['Index Cond'], JSON.stringify(moved[0])).toMatch(/due_at >=/);
      expect(moved[0]!.Filter ?? '', JSON.stringify(moved[0])).not.toMatch(/at_risk_at|due_at >=/);
    });

    it('the at-risk list, worst first, reads the paused orders at risk from their index, not every paused order', async () => {
      // Paused orders not yet due are most of the paused ones (1,770 of 1,925 on 2,000,000
      // orders); a filter on each one's row read them all for none kept (migration 0015).
      const query = { atRisk: 'true', sort: '-lateness', limit: '50' };
      for (const p of [await plan(ops, query), (await genericPlan(ops, query))!]) {
        const paused = p.filter((n) => n['Index Name'] === 'orders_paused_by_customer');
        expect(paused.length, JSON.stringify(p)).toBe(1);
        expect(paused[0]!['Index Cond'], JSON.stringify(paused[0])).toMatch(/at_risk_at </);
        expect(paused[0]!.Filter ?? '', JSON.stringify(paused[0])).not.toMatch(/at_risk_at/);
      }
    });
  },
);
