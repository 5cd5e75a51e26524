import type { Kysely, Selectable } from 'kysely';
import { generateApiKey } from '../auth/api-keys.js';
import type { ApiKeysTable, DB, FactoriesTable } from '../db/schema.js';
import { notFound } from '../http/problems.js';
import type { ApiKey, Factory } from './schemas.js';

const toFactory = (r: Selectable<FactoriesTable>): Factory => ({
  id: r.id,
  name: r.name,
  kind: r.kind as Factory['kind'],
  country: r.country,
  timezone: r.timezone,
  createdAt: r.created_at.toISOString(),
});
const toApiKey = (r: Omit<Selectable<ApiKeysTable>, 'secret_hash'>): ApiKey => ({
  id: r.id,
  factoryId: r.factory_id,
  label: r.label,
  createdAt: r.created_at.toISOString(),
  revokedAt: r.revoked_at?.toISOString() ?? null,
});

export async function createFactory(
  db: Kysely<DB>,
  input: { name: string; kind: string; country: string; timezone: string },
): Promise<Factory> {
  return toFactory(await db.insertInto('factories').values(input).returningAll().executeTakeFirstOrThrow());
}

export async function getFactory(db: Kysely<DB>, id: string): Promise<Factory> {
  const row = await db.selectFrom('factories').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) throw notFound('factory');
  return toFactory(row);
}

export async function listFactories(
  db: Kysely<DB>,
  opts: { limit: number; after?: string; kind?: string; country?: string },
): Promise<Factory[]> {
  const rows = await db
    .selectFrom('factories')
    .selectAll()
    .$if(opts.after !== undefined, (q) => q.where('id', '>', opts.after!))
    .$if(opts.kind !== undefined, (q) => q.where('kind', '=', opts.kind!))
    .$if(opts.country !== undefined, (q) => q.where('country', '=', opts.country!))
    .orderBy('id')
    .limit(opts.limit)
    .execute();
  return rows.map(toFactory);
}

export async function createApiKey(db: Kysely<DB>, factoryId: string, label?: string): Promise<ApiKey & { key: string }> {
  await getFactory(db, factoryId);
  const generated = generateApiKey();
  const row = await db
    .insertInto('api_keys')
    .values({ id: generated.id, factory_id: factoryId, label: label ?? null, secret_hash: generated.secretHash })
    .returning(['id', 'factory_id', 'label', 'created_at', 'revoked_at'])
    .executeTakeFirstOrThrow();
  return { ...toApiKey(row), key: generated.key };
}

export async function listApiKeys(db: Kysely<DB>, factoryId: string): Promise<ApiKey[]> {
  await getFactory(db, factoryId);
  const rows = await db
    .selectFrom('api_keys')
    .select(['id', 'factory_id', 'label', 'created_at', 'revoked_at'])
    .where('factory_id', '=', factoryId)
    .orderBy('created_at')
    .execute();
  return rows.map(toApiKey);
}

/** Revokes a key; revoking twice is harmless. Returns the factory it belonged to. */
export async function revokeApiKey(db: Kysely<DB>, id: string): Promise<string> {
  const row = await db
    .updateTable('api_keys')
    .set({ revoked_at: new Date() })
    .where('id', '=', id)
    .where('revoked_at', 'is', null)
    .returning('factory_id')
    .executeTakeFirst();
  if (row) return row.factory_id;
  const existing = await db.selectFrom('api_keys').select('factory_id').where('id', '=', id).executeTakeFirst();
  if (!existing) throw notFound('API key');
  return existing.factory_id;
}
