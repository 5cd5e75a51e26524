import type { Kysely } from 'kysely';
import type { DB } from '../db/schema.js';
import { unauthorized } from '../http/problems.js';
import { parseApiKey, secretMatches } from './api-keys.js';
import type { JwtVerifier } from './jwt.js';
import { ApiKeyCache, type KeyRow } from './key-cache.js';
import type { Principal } from './principal.js';

/** What a caller may present: a bearer token (people) or an API key (factory systems). */
export interface Credentials {
  bearer?: string;
  apiKey?: string;
}

export type Authenticate = (credentials: Credentials) => Promise<Principal>;

/**
 * Checks credentials on every call. A key's row comes from `keys` when it holds it (see
 * ApiKeyCache: a revoked key fails on the next request of the instance that revoked it, and on
 * the others as soon as they hear of it), else from the database.
 */
export function createAuthenticator(db: Kysely<DB>, jwt: JwtVerifier, keys = new ApiKeyCache()): Authenticate {
  return async ({ bearer, apiKey }) => {
    if (apiKey !== undefined) {
      const parsed = parseApiKey(apiKey);
      if (!parsed) throw unauthorized('API key invalid');
      let row: (KeyRow & { revoked_at?: Date | null }) | undefined = keys.get(parsed.id);
      if (!row) {
        const since = keys.begin();
        row = await db
          .selectFrom('api_keys')
          .select(['factory_id', 'secret_hash', 'revoked_at'])
          .where('id', '=', parsed.id)
          .executeTakeFirst();
        if (row && !row.revoked_at) keys.put(parsed.id, row, since);
      }
      if (!row || !secretMatches(parsed.secret, row.secret_hash)) throw unauthorized('API key invalid');
      if (row.revoked_at) throw unauthorized('API key revoked');
      return { role: 'factory', factoryId: row.factory_id, keyId: parsed.id };
    }
    if (bearer !== undefined) return jwt.verify(bearer);
    throw unauthorized('credentials required: Authorization: Bearer <token> or X-API-Key');
  };
}

/** Reads credentials from HTTP headers; a malformed Authorization header is refused, not ignored. */
export function credentialsFromHeaders(headers: Record<string, string | string[] | undefined>): Credentials {
  const key = headers['x-api-key'];
  const auth = headers.authorization;
  const out: Credentials = {};
  if (typeof key === 'string') out.apiKey = key;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    out.bearer = m ? m[1]! : '';
  }
  return out;
}
