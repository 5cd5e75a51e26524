import { Readable } from 'node:stream';
import { stringify } from 'csv-stringify';
import type { Kysely } from 'kysely';
import type { Principal } from '../auth/principal.js';
import type { DB } from '../db/schema.js';
import { listHeads } from './list.js';
import type { ListOrdersQuery, Order } from './schemas.js';

export const CSV_MAX_ROWS = 100_000;
const PAGE = 200;

// The order's own fields: a route has no column (the pages are read without their routes).
const COLUMNS: Array<[string, (o: Omit<Order, 'route'>) => unknown]> = [
  ['id', (o) => o.id],
  ['externalRef', (o) => o.externalRef],
  ['customerId', (o) => o.customerId],
  ['product', (o) => o.product],
  ['quantity', (o) => o.quantity],
  ['status', (o) => o.status],
  ['currentStages', (o) => o.currentStages.join(' ')],
  ['progress', (o) => o.progress],
  ['promisedAt', (o) => o.promisedAt],
  ['dueAt', (o) => o.dueAt],
  ['projectedAt', (o) => o.projectedAt],
  ['late', (o) => o.late],
  ['atRisk', (o) => o.atRisk],
  ['lateByMinutes', (o) => o.lateByMinutes],
  ['overrun', (o) => o.overrun],
  ['lateStart', (o) => o.lateStart],
  ['lastEventAt', (o) => o.lastEventAt],
  ['holdCause', (o) => o.holdCause],
  ['createdAt', (o) => o.createdAt],
  ['updatedAt', (o) => o.updatedAt],
];

// A cell that starts like a formula is run by spreadsheets (CSV injection): make it text.
const safeCell = (v: unknown) => (typeof v === 'string' && /^[=+\-@\t\r]/.test(v) ? `'${v}` : v);

/** Streams every order matching the filters as CSV, page by page, up to CSV_MAX_ROWS rows. */
export function ordersCsv(db: Kysely<DB>, p: Principal, q: ListOrdersQuery): Readable {
  async function* rows() {
    let cursor: string | undefined;
    let sent = 0;
    do {
      const page = await listHeads(db, p, { ...q, limit: PAGE, cursor });
      for (const o of page.heads) {
        if (sent++ >= CSV_MAX_ROWS) return;
        yield COLUMNS.map(([, get]) => safeCell(get(o)));
      }
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
  }
  return Readable.from(rows()).pipe(
    stringify({ header: true, columns: COLUMNS.map(([name]) => name), cast: { boolean: (b) => (b ? 'true' : 'false') } }),
  );
}
