import { createHash } from 'node:crypto';
import { sql, type Kysely, type RawBuilder, type SqlBool } from 'kysely';
import { z } from 'zod';
import type { Principal } from '../auth/principal.js';
import { prepared, type Run } from '../db/flight.js';
import type { DB, OrderRow } from '../db/schema.js';
import { badRequest } from '../http/problems.js';
import { isoText, routesJson } from './repository.js';
import type { RouteCache } from './route-cache.js';
import type { ListOrdersQuery, Order } from './schemas.js';
import { projectedMs } from './projection.js';
import { flagsOfRow, orderHead } from './service.js';

/**
 * The keyset cursor: the sort key and id of the last row served, plus the reference time of the
 * first page, so that every page of one walk judges "late", "at risk" and lateness at the same
 * instant and no order moves between pages as the clock runs.
 */
interface PageCursor {
  s: ListOrdersQuery['sort'];
  k: string;
  id: string;
  ref: string;
  /** The filters of the walk, digested: a page of other filters would skip or repeat rows. */
  f: string;
}

/** A digest of every parameter that decides which rows come in which order (not the page size). */
const filtersOf = ({ cursor: _c, limit: _l, ...rest }: ListOrdersQuery) =>
  createHash('sha256')
    .update(JSON.stringify(Object.entries(rest).sort(([a], [b]) => a.localeCompare(b))))
    .digest('base64url')
    .slice(0, 16);

const encode = (c: PageCursor) => Buffer.from(JSON.stringify(c)).toString('base64url');

const isoInRange = z.iso.datetime().refine((v) => Math.abs(Date.parse(v)) < 8.64e15);
const cursorSchema = z.discriminatedUnion('s', [
  z.object({ s: z.enum(['promisedAt', '-updatedAt']), k: isoInRange, id: z.uuid(), ref: isoInRange, f: z.string() }),
  // k is the instant the order's lateness is measured against (see lateAgainst).
  z.object({ s: z.literal('-lateness'), k: isoInRange, id: z.uuid(), ref: isoInRange, f: z.string() }),
]);

function decode(text: string, q: ListOrdersQuery): PageCursor {
  let c: ReturnType<typeof cursorSchema.safeParse> | undefined;
  try {
    c = cursorSchema.safeParse(JSON.parse(Buffer.from(text, 'base64url').toString()));
  } catch {
    // not JSON: refused below
  }
  if (c?.success && c.data.s === q.sort && c.data.f === filtersOf(q)) return c.data;
  throw badRequest('invalid query.cursor', [
    { path: 'query.cursor', message: 'not a cursor of this listing (the sort and filters must not change between pages)' },
  ]);
}

const unfinished = sql<SqlBool>`orders.status in ('open', 'on_hold', 'shipped')`;
/**
 * A status condition with the statuses written into the text, not passed as parameters: a list
 * runs as a prepared statement (listHeads), and a plan made for any parameters could not use the
 * partial indexes on unfinished, delivered or cancelled orders, so Postgres would plan every call.
 */
const statusIn = (statuses: readonly string[]) => sql<SqlBool>`orders.status in (${sql.join(statuses.map((x) => sql.lit(x)))})`;
/** Past due as of ref, for an unfinished order; a customer's hold pauses the clock at its start. */
const pastDue = (ref: Date) =>
  sql<SqlBool>`(orders.due_at < ${ref} and (orders.hold_cause is distinct from 'engineering_query' or orders.held_at > orders.due_at))`;

const pausedByCustomer = sql<SqlBool>`orders.hold_cause = 'engineering_query'`;
/**
 * Lateness as a point on the clock: ref minus the order's lateness. Ascending, it is lateness
 * descending, and for each kind of order it follows something an index keeps in order:
 * - running: its due date (late by ref - due_at);
 * - paused by the customer: the due date moved on by the wait so far (late by held_at - due_at);
 * - delivered: ref minus how late it was delivered (delivered_at - due_at), a fixed interval;
 * - cancelled: never late, listed last.
 */
const lateAgainst = {
  running: () => sql<Date>`orders.due_at`,
  paused: (ref: Date) => sql<Date>`(orders.due_at + (${ref}::timestamptz - orders.held_at))`,
  delivered: (ref: Date) => sql<Date>`(${ref}::timestamptz - (orders.delivered_at - orders.due_at))`,
  cancelled: () => sql<Date>`timestamptz '9999-12-31T00:00:00Z'`,
};
const UNFINISHED = ['open', 'on_hold', 'shipped'] as const;

/**
 * The listing's query, separate from its execution so a test can EXPLAIN exactly what runs.
 * Sorted by lateness, each kind of order (see lateAgainst) is read apart in the order of its own
 * index, a page at most from each, and the pages are merged: no listing sorts every late order.
 */
export function listQuery(db: Kysely<DB>, p: Principal, q: ListOrdersQuery, ref: Date, cursor?: PageCursor) {
  const onlyUnfinished = q.status !== undefined && q.status.every((s) => s === 'open' || s === 'on_hold' || s === 'shipped');
  const deliveredLate = sql<SqlBool>`orders.delivered_at > orders.due_at`;
  const lateExpr = onlyUnfinished ? pastDue(ref) : sql<SqlBool>`((${unfinished} and ${pastDue(ref)}) or ${deliveredLate})`;
  // Worst first, the at-risk orders are those due soonest from now: read orders_unfinished_due from
  // now on, in order, until a page is found. The planner cannot count at-risk orders (a window
  // between two columns around now) and, offered orders_unfinished_at_risk_due, reads every one of
  // them to sort them (48,000 at 2M orders): `+ interval '0'` keeps that index out of its choices.
  // By promise date, the at-risk orders are read in promise order (see 'promisedAt' below): then
  // neither column of the window is offered as an index range either, but in the branch of moved
  // promises, whose own index holds both.
  const atRiskByPromise = q.sort === 'promisedAt' && q.atRisk === true;
  const atRiskAt = q.sort === '-lateness' || atRiskByPromise ? sql`(orders.at_risk_at + interval '0')` : sql`orders.at_risk_at`;
  const dueAt = atRiskByPromise ? sql`(orders.due_at + interval '0')` : sql`orders.due_at`;
  const atRiskOf = (at: RawBuilder<unknown>, due: RawBuilder<unknown> = dueAt) =>
    sql<SqlBool>`(${unfinished} and ${at} < ${ref} and ${due} >= ${ref})`;
  const atRiskExpr = atRiskOf(atRiskAt);
  // The window on the columns themselves: for a branch whose own index holds both instants.
  const atRiskOnIndex = atRiskOf(sql`orders.at_risk_at`, sql`orders.due_at`);
  const passed = (column: 'overrun_at' | 'late_start_at') => sql<SqlBool>`(${unfinished} and orders.${sql.ref(column)} < ${ref})`;
  const silentExpr = sql<SqlBool>`(orders.status = 'open' and orders.last_event_at < ${new Date(ref.getTime() - q.silentAfterHours * 3_600_000)})`;
  // A flag's negation is every order the flag does not hold for, including those where it is unknown (NULL).
  const flag = (on: boolean, expr: ReturnType<typeof passed>) => (on ? expr : sql<SqlBool>`(${expr}) is not true`);
  const factoryScope = (factoryId: string) =>
    sql<SqlBool>`exists (select 1 from order_steps s where s.order_id = orders.id and s.factory_id = ${factoryId})`;

  let query = db
    .selectFrom('orders')
    .selectAll('orders')
    .$if(p.role === 'customer', (qb) => qb.where('orders.customer_id', '=', (p as { customerId: string }).customerId))
    .$if(p.role === 'factory', (qb) => qb.where(factoryScope((p as { factoryId: string }).factoryId)))
    .$if(q.status !== undefined, (qb) => qb.where(statusIn(q.status!)))
    // Sorted by lateness, each branch below takes the late condition of its own statuses (late).
    .$if(q.late !== undefined && q.sort !== '-lateness', (qb) => qb.where(flag(q.late!, lateExpr)))
    // Sorted by lateness, and at risk by promise date, each branch below takes the at-risk
    // condition its index reads.
    .$if(q.atRisk !== undefined && q.sort !== '-lateness' && !atRiskByPromise, (qb) => qb.where(flag(q.atRisk!, atRiskExpr)))
    .$if(q.overrun !== undefined, (qb) => qb.where(flag(q.overrun!, passed('overrun_at'))))
    .$if(q.lateStart !== undefined, (qb) => qb.where(flag(q.lateStart!, passed('late_start_at'))))
    .$if(q.silent !== undefined, (qb) => qb.where(flag(q.silent!, silentExpr)))
    .$if(q.customerId !== undefined, (qb) => qb.where('orders.customer_id', '=', q.customerId!))
    .$if(q.factoryId !== undefined, (qb) => qb.where(factoryScope(q.factoryId!)))
    .$if(q.stage !== undefined, (qb) => qb.where(sql<SqlBool>`orders.current_stages @> array[${q.stage!}]::text[]`))
    .$if(q.country !== undefined, (qb) => qb.where('orders.customer_country', '=', q.country!))
    .$if(q.promisedBefore !== undefined, (qb) => qb.where('orders.promised_at', '<', new Date(q.promisedBefore!)))
    .$if(q.promisedAfter !== undefined, (qb) => qb.where('orders.promised_at', '>', new Date(q.promisedAfter!)))
    .$if(q.product !== undefined, (qb) =>
      qb.where(sql<SqlBool>`orders.product ilike ${'%' + q.product!.replace(/[\\%_]/g, (c) => '\\' + c) + '%'}`),
    );

  // Every shape selects its sort key as sort_key: the cursor is cut from it (and a JSON page,
  // which reads other columns than the row, orders by it: pageQuery).
  const ascending = (column: 'promised_at') => {
    query = query.select(sql<Date>`orders.${sql.ref(column)}`.as('sort_key'));
    if (cursor)
      query = query.where(
        sql<SqlBool>`(orders.${sql.ref(column)}, orders.id) > (${new Date(cursor.k as string)}::timestamptz, ${cursor.id}::uuid)`,
      );
    query = query.orderBy(`orders.${column}`).orderBy('orders.id');
  };
  // A page at most from each branch, each read in the order of its own index with its sort key as
  // sort_key, and the pages merged: no listing sorts every row it could serve.
  const pageOf = (branch: typeof query, key: RawBuilder<Date>, order: (qb: typeof query) => typeof query) =>
    order(
      branch
        .$if(cursor !== undefined, (qb) =>
          qb.where(sql<SqlBool>`(${key}, orders.id) > (${new Date(cursor!.k)}::timestamptz, ${cursor!.id}::uuid)`),
        )
        .select(key.as('sort_key')),
    ).limit(q.limit + 1);
  const merge = (branches: Array<typeof query>) => {
    const [first, ...rest] = branches.map((b, i) => db.selectFrom(b.as(`b${i}`)).selectAll());
    let merged = first!;
    for (const b of rest) merged = merged.unionAll(b);
    return merged
      .orderBy(sql`sort_key`)
      .orderBy(sql`id`)
      .limit(q.limit + 1);
  };
  switch (q.sort) {
    case 'promisedAt': {
      if (!atRiskByPromise) {
        ascending('promised_at');
        break;
      }
      // At risk means due from now on, so an at-risk order promised before now is one whose due date
      // a customer's hold moved past its promise: few, with an index of their own that holds the
      // at-risk window's two instants, so the window is a condition on each entry, not on each
      // order's row (migration 0017). The others are promised from now on, read in promise order
      // from now (orders_unfinished_promised) until a page is found. A page at most from each, merged.
      const promised = sql<Date>`orders.promised_at`;
      const inPromiseOrder = (qb: typeof query) => qb.orderBy('orders.promised_at').orderBy('orders.id');
      const fromNow = pageOf(query.where('orders.promised_at', '>=', ref).where(atRiskExpr), promised, inPromiseOrder);
      const moved = pageOf(
        query
          .where('orders.promised_at', '<', ref)
          .where(sql<SqlBool>`orders.due_at <> orders.promised_at`)
          .where(atRiskOnIndex),
        promised,
        inPromiseOrder,
      );
      return { query: merge([fromNow, moved]), descending: false, fixedPlan: !valueScoped(p, q) };
    }
    case '-updatedAt':
      query = query.select(sql<Date>`orders.updated_at`.as('sort_key'));
      if (cursor)
        query = query.where(
          sql<SqlBool>`(orders.updated_at, orders.id) < (${new Date(cursor.k as string)}::timestamptz, ${cursor.id}::uuid)`,
        );
      query = query.orderBy('orders.updated_at', 'desc').orderBy('orders.id', 'desc');
      return { query: query.limit(q.limit + 1), descending: true, fixedPlan: false };
    case '-lateness': {
      // At risk, overrun and late to start are flags of unfinished orders only: no branch for the others.
      const unfinishedOnly = q.atRisk === true || q.overrun === true || q.lateStart === true;
      const statuses = new Set(
        q.status ?? (unfinishedOnly ? UNFINISHED : ['open', 'on_hold', 'shipped', 'delivered', 'cancelled']),
      );
      // Cancelled orders are never late: the late list has no page of them to merge.
      if (q.late === true) statuses.delete('cancelled');
      const unfinishedAsked = UNFINISHED.filter((x) => statuses.has(x));
      const branches: Array<typeof query> = [];
      // Late is a condition of each kind of order on its own: past due for unfinished ones (a range
      // of the due date, which the branches' indexes read: without it, the branch of orders paused
      // by their customer read every one of them, 4.5 of the late list's 5.3 ms on 2,000,000
      // orders), delivered after the due date for delivered ones.
      // At risk likewise: the running orders are read in due-date order, the at-risk instant kept
      // out of the planner's reach (atRiskAt); the paused ones' index holds it, so it is a
      // condition on each entry, not a filter on every paused order's row (migration 0015).
      const asked = (on: boolean | undefined, expr: RawBuilder<SqlBool>) => (qb: typeof query) =>
        on === undefined ? qb : qb.where(flag(on, expr));
      const late = (expr: RawBuilder<SqlBool>) => asked(q.late, expr);
      const atRisk = (expr: RawBuilder<SqlBool>) => asked(q.atRisk, expr);
      if (unfinishedAsked.length) {
        const base = query.where(statusIn(unfinishedAsked)).$call(late(pastDue(ref)));
        branches.push(
          pageOf(
            base.where(sql<SqlBool>`(${pausedByCustomer}) is not true`).$call(atRisk(atRiskExpr)),
            lateAgainst.running(),
            (qb) => qb.orderBy('orders.due_at').orderBy('orders.id'),
          ),
          pageOf(base.where(pausedByCustomer).$call(atRisk(atRiskOnIndex)), lateAgainst.paused(ref), (qb) =>
            qb.orderBy(lateAgainst.paused(ref)).orderBy('orders.id'),
          ),
        );
      }
      // A finished kind of order: its status, its own late condition, and at risk as asked.
      const finished = (status: string, lateCondition: RawBuilder<SqlBool>) =>
        query
          .where(statusIn([status]))
          .$call(late(lateCondition))
          .$call(atRisk(atRiskExpr));
      if (statuses.has('delivered')) {
        branches.push(
          pageOf(finished('delivered', deliveredLate), lateAgainst.delivered(ref), (qb) =>
            qb.orderBy(sql`(orders.delivered_at - orders.due_at)`, 'desc').orderBy('orders.id'),
          ),
        );
      }
      if (statuses.has('cancelled')) {
        branches.push(pageOf(finished('cancelled', lateExpr), lateAgainst.cancelled(), (qb) => qb.orderBy('orders.id')));
      }
      return { query: merge(branches), descending: false, fixedPlan: !valueScoped(p, q) };
    }
  }
  return { query: query.limit(q.limit + 1), descending: false, fixedPlan: false };
}

/**
 * Whether a listing narrows to rows picked by a value (one customer, a factory, a stage, a country,
 * a product, a promise range): how many rows match depends on the value, and so does the best plan.
 * A merged listing without any (by lateness; at risk by promise date) reads each branch's index in
 * order up to a page, whatever its values: one generic plan serves every call (listPage).
 */
const valueScoped = (p: Principal, q: ListOrdersQuery) =>
  p.role === 'customer' ||
  p.role === 'factory' ||
  [q.customerId, q.factoryId, q.stage, q.country, q.product, q.promisedBefore, q.promisedAfter].some((v) => v !== undefined);

/** A page of orders, each without its route (the CSV export has no column for one). */
export interface OrderHeads {
  heads: Array<Omit<Order, 'route'>>;
  nextCursor: string | null;
}

type SortedRow = OrderRow & { sort_key: Date };

/** Where a walk of pages stands: the cursor it continues from, and the instant all its pages are judged at. */
function walkAt(q: ListOrdersQuery, now: Date): { cursor?: PageCursor; ref: Date } {
  const cursor = q.cursor ? decode(q.cursor, q) : undefined;
  return { cursor, ref: cursor ? new Date(cursor.ref) : now };
}

function cursorAfter(rows: Array<{ sort_key: Date; id: string }>, q: ListOrdersQuery, ref: Date): string | null {
  const last = rows[q.limit - 1];
  return rows.length > q.limit && last
    ? encode({ s: q.sort, k: last.sort_key.toISOString(), id: last.id, ref: ref.toISOString(), f: filtersOf(q) })
    : null;
}

/** Orders the caller may see, filtered, in keyset pages, without their routes. */
export async function listHeads(db: Kysely<DB>, p: Principal, q: ListOrdersQuery, now = new Date()): Promise<OrderHeads> {
  const { cursor, ref } = walkAt(q, now);
  const { query } = listQuery(db, p, q, ref, cursor);
  // Prepared: planning a list cost more than running it (pg_stat_statements; db/flight.ts).
  const rows = (await db.executeQuery(prepared(query.compile(), 'read'))).rows as SortedRow[];
  return { heads: rows.slice(0, q.limit).map((r) => orderHead(r, ref)), nextCursor: cursorAfter(rows, q, ref) };
}

/** An instant as milliseconds since the epoch, as a JavaScript Date holds it (whole milliseconds). */
const epochMs = (column: string) => sql<number | null>`floor(extract(epoch from ${sql.ref(`m.${column}`)}) * 1000)::float8`;

/** An order of a JSON page as Postgres reads it (pageQuery). */
interface PageRow {
  id: string;
  last_seq: number;
  sort_key: Date;
  /** The fields before projectedAt, as JSON, closing brace included. */
  head: string;
  /** The fields after the flags, as JSON, opening brace included. */
  tail: string;
  status: string;
  hold_cause: string | null;
  due_at: number;
  delivered_at: number | null;
  at_risk_at: number | null;
  held_at: number | null;
  overrun_at: number | null;
  late_start_at: number | null;
  projection_lead_minutes: number | null;
  projection_floor_at: number | null;
}

/**
 * The listing as a JSON page reads it: the fields that do not depend on the page's instant are
 * written by Postgres, in the API's names and order (orderHead), and the instants the others
 * depend on come as numbers. A page of 50 orders parsed as rows was some 1,400 column values and
 * 650 Dates, and those objects were most of what outlived the service's scavenges (BENCHMARKS.md).
 */
export function pageQuery(db: Kysely<DB>, listing: ReturnType<typeof listQuery>) {
  const dir = listing.descending ? 'desc' : 'asc';
  return (
    db
      // As a raw subquery: the listing's builder type is a union of its shapes.
      .selectFrom(sql`${listing.query}`.as('m'))
      .select([
        sql<string>`m.id`.as('id'),
        sql<number>`m.last_seq`.as('last_seq'),
        sql<Date>`m.sort_key`.as('sort_key'),
        sql<string>`json_build_object('id', m.id, 'externalRef', m.external_ref, 'customerId', m.customer_id,
        'engineerId', m.engineer_id, 'product', m.product, 'quantity', m.quantity, 'status', m.status,
        'currentStages', m.current_stages, 'progress', m.progress, 'promisedAt', ${isoText('m.promised_at')},
        'dueAt', ${isoText('m.due_at')})::text`.as('head'),
        sql<string>`json_build_object('holdCause', m.hold_cause, 'lastEventAt', ${isoText('m.last_event_at')},
        'createdAt', ${isoText('m.created_at')}, 'updatedAt', ${isoText('m.updated_at')}, 'lastSeq', m.last_seq)::text`.as(
          'tail',
        ),
        sql<string>`m.status`.as('status'),
        sql<string | null>`m.hold_cause`.as('hold_cause'),
        ...(
          ['due_at', 'delivered_at', 'at_risk_at', 'held_at', 'overrun_at', 'late_start_at', 'projection_floor_at'] as const
        ).map((c) => epochMs(c).as(c)),
        sql<number | null>`m.projection_lead_minutes`.as('projection_lead_minutes'),
      ])
      .orderBy(sql`m.sort_key`, dir)
      .orderBy(sql`m.id`, dir)
  );
}

/** One order of a page as JSON without its closing brace, its flags as of `ref` (as orderHead). */
function itemJson(r: PageRow, ref: Date): string {
  const projected = projectedMs(
    { deliveredAt: r.delivered_at, projectionLeadMinutes: r.projection_lead_minutes, projectionFloorAt: r.projection_floor_at },
    ref,
  );
  const flags = flagsOfRow(r, ref);
  const projectedAt = projected === null ? 'null' : `"${new Date(projected).toISOString()}"`;
  return `${r.head.slice(0, -1)},"projectedAt":${projectedAt},${JSON.stringify(flags).slice(1, -1)},${r.tail.slice(1, -1)}`;
}

/** A page of orders as JSON: each order's fields but its route (itemJson), and its route as bytes. */
export interface OrderPage {
  items: Array<{ id: string; lastSeq: number; json: string }>;
  routes: Buffer[];
  nextCursor: string | null;
}

/**
 * Orders the caller may see, filtered, in keyset pages, with their routes: those kept at the seq
 * the page read (route-cache.ts), the others read in one more statement and kept.
 */
export async function listPage(
  db: Kysely<DB>,
  p: Principal,
  q: ListOrdersQuery,
  now = new Date(),
  kept?: RouteCache,
  fixedPlan?: Run,
): Promise<OrderPage> {
  const { cursor, ref } = walkAt(q, now);
  const listing = listQuery(db, p, q, ref, cursor);
  const query = prepared(pageQuery(db, listing).compile(), 'read');
  // Prepared: planning a list cost more than running it (pg_stat_statements; db/flight.ts). Left
  // to choose, Postgres planned the late list anew on every call; a listing whose plan its design
  // fixes runs with its generic plan (valueScoped).
  const rows = (
    listing.fixedPlan && fixedPlan ? await fixedPlan<PageRow>(query) : (await db.executeQuery(query)).rows
  ) as PageRow[];
  const items = rows.slice(0, q.limit).map((r) => ({ id: r.id, lastSeq: r.last_seq, json: itemJson(r, ref) }));
  const routes = items.map((h) => kept?.get(h.id, h.lastSeq));
  const missing = items.filter((_, i) => routes[i] === undefined).map((h) => h.id);
  const read = await routesJson(db, missing);
  for (const [id, route] of read) kept?.put(id, route);
  // A route read after the page may be a write newer than its order's fields, as before any cache.
  return {
    items,
    nextCursor: cursorAfter(rows, q, ref),
    routes: items.map((h, i) => routes[i] ?? read.get(h.id)?.json ?? EMPTY_ROUTE),
  };
}

const EMPTY_ROUTE = Buffer.from('[]');
const ITEMS = Buffer.from('{"items":[');
const ROUTE_KEY = Buffer.from(',"route":');
const CLOSE = Buffer.from('}');

/**
 * The page as the API answers it, `{items, nextCursor}`, each route spliced in as Postgres wrote
 * it, as bytes: a page is some 365 KB, and a JavaScript string that large is slow to build and
 * slower to encode (V8 puts it in its large-object space: 1.8 ms to join 50 routes into one
 * string, and as long again to measure and encode it, against 0.1 ms to join them as bytes).
 */
export function pageJson({ items, routes, nextCursor }: OrderPage): Buffer {
  const parts: Buffer[] = [ITEMS];
  items.forEach((h, i) => {
    // An order's JSON ends with its last field: its route goes in before the closing brace.
    parts.push(Buffer.from(i ? `,${h.json}` : h.json), ROUTE_KEY, routes[i]!, CLOSE);
  });
  parts.push(Buffer.from(`],"nextCursor":${JSON.stringify(nextCursor)}}`));
  return Buffer.concat(parts);
}
