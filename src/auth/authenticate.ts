import type { Kysely } from 'kysely';
import type { DB } from '../db/schema.js';
import { unauthorized } from '../http/problems.js';
import { parseApiKey, secretMatches } from './api-keys.js';
import type { JwtVerifier } from './jwt.js';
import type { Principal } from './principal.js';

/** What a caller may present: a bearer token (people) or an API key (factory systems). */
export interface Credentials {
  bearer?: string;
  apiKey?: string;
}

export type Authenticate = (credentials: Credentials) => Promise<Principal>;

/**
 * Checks credentials on every call: a revoked key fails on the very next request because
 * nothing about keys is cached.
 */
export function createAuthenticator(db: Kysely<DB>, jwt: JwtVerifier): Authenticate {
  return async ({ bearer, apiKey }) => {
    if (apiKey !== undefined) {
      const parsed = parseApiKey(apiKey);
      if (!parsed) throw unauthorized('API key invalid');
      const row = await db
        .selectFrom('api_keys')
        .select(['factory_id', 'secret_hash', 'revoked_at'])
        .where('id', '=', parsed.id)
        .executeTakeFirst();
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
