import { sql, type Kysely, type SqlBool } from 'kysely';
import { z } from 'zod';
import type { Principal } from '../auth/principal.js';
import type { DB, OrderRow } from '../db/schema.js';
import { badRequest } from '../http/problems.js';
import { stepsOf } from './repository.js';
import type { ListOrdersQuery, Order } from './schemas.js';
import { toOrder } from './service.js';

/**
 * The keyset cursor: the sort key and id of the last row served, plus the reference time of the
 * first page, so that every page of one walk judges "late", "at risk" and lateness at the same
 * instant and no order moves between pages as the clock runs.
 */
interface PageCursor {
  s: ListOrdersQuery['sort'];
  k: string | number;
  id: string;
  ref: string;
}

const encode = (c: PageCursor) => Buffer.from(JSON.stringify(c)).toString('base64url');

const isoInRange = z.iso.datetime().refine((v) => Math.abs(Date.parse(v)) < 8.64e15);
const cursorSchema = z.discriminatedUnion('s', [
  z.object({ s: z.enum(['promisedAt', '-updatedAt']), k: isoInRange, id: z.uuid(), ref: isoInRange }),
  // k is the lateness in seconds, or the promised date when only unfinished orders are listed.
  z.object({ s: z.literal('-lateness'), k: z.union([z.number().finite().min(-1e15).max(1e15), isoInRange]), id: z.uuid(), ref: isoInRange }),
]);

function decode(text: string, sort: ListOrdersQuery['sort']): PageCursor {
  try {
    const c = cursorSchema.safeParse(JSON.parse(Buffer.from(text, 'base64url').toString()));
    if (c.success && c.data.s === sort) return c.data;
  } catch {
    // not JSON: fall through
  }
  throw badRequest('invalid query.cursor', [{ path: 'query.cursor', message: 'not a cursor of this listing (sort must not change between pages)' }]);
}

const unfinished = sql<SqlBool>`orders.status in ('open', 'on_hold', 'shipped')`;
/** Past due as of ref, for an unfinished order; a customer's hold pauses the clock at its start. */
const pastDue = (ref: Date) =>
  sql<SqlBool>`(orders.due_at < ${ref} and (orders.hold_cause is distinct from 'engineering_query' or orders.held_at > orders.due_at))`;

/** Lateness in seconds as of ref: how far past its promise the order is (or was delivered); cancelled last. */
const lateness = (ref: Date) =>
  sql<number>`coalesce(extract(epoch from (coalesce(orders.delivered_at, case when ${unfinished} then
    (case when orders.hold_cause = 'engineering_query' then orders.held_at else ${ref}::timestamptz end) end) - orders.due_at)), -1e15)::float8`;

const pausedByCustomer = sql<SqlBool>`orders.hold_cause = 'engineering_query'`;
/**
 * The moment an order's lateness is measured against, as a point on the clock: its due date, or
 * for an order waiting on the customer, the due date moved on by the wait so far. Ascending, this
 * is lateness descending among unfinished orders.
 */
const pausedDue = (ref: Date) => sql<Date>`(orders.due_at + (${ref}::timestamptz - orders.held_at))`;

/**
 * The listing's query, separate from its execution so a test can EXPLAIN exactly what runs.
 * Sorting unfinished orders by lateness is sorting them by due date, which an index serves,
 * except for the few whose clock the customer paused: the late list of ops reads the two apart
 * (the first from the index, the second from its own small index) and merges them.
 */
export function listQuery(db: Kysely<DB>, p: Principal, q: ListOrdersQuery, ref: Date, cursor?: PageCursor) {
  const onlyUnfinished = q.status !== undefined && q.status.every((s) => s === 'open' || s === 'on_hold' || s === 'shipped');
  const lateExpr = onlyUnfinished ? pastDue(ref) : sql<SqlBool>`((${unfinished} and ${pastDue(ref)}) or orders.delivered_at > orders.due_at)`;
  const atRiskExpr = sql<SqlBool>`(${unfinished} and orders.at_risk_at < ${ref} and orders.due_at >= ${ref})`;
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
    .$if(q.status !== undefined, (qb) => qb.where('orders.status', 'in', q.status!))
    .$if(q.late !== undefined, (qb) => qb.where(flag(q.late!, lateExpr)))
    .$if(q.atRisk !== undefined, (qb) => qb.where(flag(q.atRisk!, atRiskExpr)))
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

  let keyOf: (r: OrderRow & { sort_key?: number | Date }) => string | number;
  const ascending = (column: 'promised_at') => {
    keyOf = (r) => r[column].toISOString();
    if (cursor) query = query.where(sql<SqlBool>`(orders.${sql.ref(column)}, orders.id) > (${new Date(cursor.k as string)}::timestamptz, ${cursor.id}::uuid)`);
    query = query.orderBy(`orders.${column}`).orderBy('orders.id');
  };
  switch (q.sort) {
    case 'promisedAt':
      ascending('promised_at');
      break;
    case '-updatedAt':
      keyOf = (r) => r.updated_at.toISOString();
      if (cursor) query = query.where(sql<SqlBool>`(orders.updated_at, orders.id) < (${new Date(cursor.k as string)}::timestamptz, ${cursor.id}::uuid)`);
      query = query.orderBy('orders.updated_at', 'desc').orderBy('orders.id', 'desc');
      break;
    case '-lateness': {
      if (onlyUnfinished) {
        if (cursor && typeof cursor.k !== 'string') throw badRequest('invalid query.cursor', [{ path: 'query.cursor', message: 'the filters changed between pages' }]);
        keyOf = (r) => (r.sort_key as Date).toISOString();
        const after = (key: ReturnType<typeof pausedDue>) =>
          sql<SqlBool>`(${key}, orders.id) > (${new Date(cursor!.k as string)}::timestamptz, ${cursor!.id}::uuid)`;
        const running = query
          .where(sql<SqlBool>`(${pausedByCustomer}) is not true`)
          .$if(cursor !== undefined, (qb) => qb.where(after(sql<Date>`orders.due_at`)))
          .select(sql<Date>`orders.due_at`.as('sort_key'))
          .orderBy('orders.due_at')
          .orderBy('orders.id')
          .limit(q.limit + 1);
        const paused = query
          .where(pausedByCustomer)
          .$if(cursor !== undefined, (qb) => qb.where(after(pausedDue(ref))))
          .select(pausedDue(ref).as('sort_key'))
          .orderBy(pausedDue(ref))
          .orderBy('orders.id')
          .limit(q.limit + 1);
        const merged = db
          .selectFrom(running.as('running'))
          .selectAll()
          .unionAll(db.selectFrom(paused.as('paused')).selectAll())
          .orderBy('sort_key')
          .orderBy('id')
          .limit(q.limit + 1);
        return { query: merged, keyOf: keyOf! };
      }
      if (cursor && typeof cursor.k !== 'number') throw badRequest('invalid query.cursor', [{ path: 'query.cursor', message: 'the filters changed between pages' }]);
      const l = lateness(ref);
      keyOf = (r) => r.sort_key as number;
      if (cursor) query = query.where(sql<SqlBool>`(${l} < ${cursor.k}::float8 or (${l} = ${cursor.k}::float8 and orders.id > ${cursor.id}::uuid))`);
      query = query.orderBy(l, 'desc').orderBy('orders.id').select(l.as('sort_key'));
      break;
    }
  }
  return { query: query.limit(q.limit + 1), keyOf: keyOf! };
}

/** Orders the caller may see, filtered, in keyset pages. */
export async function listOrders(
  db: Kysely<DB>,
  p: Principal,
  q: ListOrdersQuery,
  now = new Date(),
): Promise<{ items: Order[]; nextCursor: string | null }> {
  const cursor = q.cursor ? decode(q.cursor, q.sort) : undefined;
  const ref = cursor ? new Date(cursor.ref) : now;
  const { query, keyOf } = listQuery(db, p, q, ref, cursor);
  const rows = (await query.execute()) as Array<OrderRow & { sort_key?: number | Date }>;

  const page = rows.slice(0, q.limit);
  const steps = await stepsOf(db, page.map((r) => r.id));
  const items = page.map((r) => toOrder(r, steps.get(r.id) ?? [], ref));
  const last = page.at(-1);
  const nextCursor =
    rows.length > q.limit && last ? encode({ s: q.sort, k: keyOf(last), id: last.id, ref: ref.toISOString() }) : null;
  return { items, nextCursor };
}
