import type { Kysely, Selectable } from 'kysely';
import type { CustomersTable, DB, EngineersTable } from '../db/schema.js';
import { conflict, notFound } from '../http/problems.js';
import type { Customer, Engineer } from './schemas.js';

const toCustomer = (r: Selectable<CustomersTable>): Customer => ({
  id: r.id,
  name: r.name,
  country: r.country,
  createdAt: r.created_at.toISOString(),
});
const toEngineer = (r: Selectable<EngineersTable>): Engineer => ({
  id: r.id,
  customerId: r.customer_id,
  name: r.name,
  email: r.email,
  createdAt: r.created_at.toISOString(),
});

export async function createCustomer(db: Kysely<DB>, input: { name: string; country: string }): Promise<Customer> {
  const row = await db.insertInto('customers').values(input).returningAll().executeTakeFirstOrThrow();
  return toCustomer(row);
}

export async function getCustomer(db: Kysely<DB>, id: string): Promise<Customer> {
  const row = await db.selectFrom('customers').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) throw notFound('customer');
  return toCustomer(row);
}

export async function listCustomers(db: Kysely<DB>, opts: { limit: number; after?: string }): Promise<Customer[]> {
  const rows = await db
    .selectFrom('customers')
    .selectAll()
    .$if(opts.after !== undefined, (q) => q.where('id', '>', opts.after!))
    .orderBy('id')
    .limit(opts.limit)
    .execute();
  return rows.map(toCustomer);
}

export async function createEngineer(
  db: Kysely<DB>,
  customerId: string,
  input: { name: string; email: string },
): Promise<Engineer> {
  await getCustomer(db, customerId);
  const row = await db
    .insertInto('engineers')
    .values({ customer_id: customerId, ...input })
    .onConflict((oc) => oc.doNothing())
    .returningAll()
    .executeTakeFirst();
  if (!row) throw conflict('engineer-exists', `an engineer with the email ${input.email} already exists for this customer`);
  return toEngineer(row);
}

export async function listEngineers(db: Kysely<DB>, customerId: string): Promise<Engineer[]> {
  await getCustomer(db, customerId);
  const rows = await db.selectFrom('engineers').selectAll().where('customer_id', '=', customerId).orderBy('created_at').execute();
  return rows.map(toEngineer);
}
