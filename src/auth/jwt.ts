import { createPublicKey, webcrypto, type KeyObject } from 'node:crypto';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { z } from 'zod';
import { unauthorized } from '../http/problems.js';
import type { Principal } from './principal.js';

/** The key people's tokens are checked with, and the one algorithm it accepts. */
export interface JwtVerifier {
  readonly algorithm: 'HS256' | 'RS256' | 'ES256';
  verify(token: string): Promise<Principal>;
}

const claimsSchema = z.discriminatedUnion('role', [
  z.object({ role: z.literal('customer'), sub: z.string().min(1), customerId: z.uuid(), exp: z.number() }),
  z.object({ role: z.enum(['ops', 'admin']), sub: z.string().min(1), exp: z.number() }),
]);

export function createJwtVerifier(opts: { secret?: string; publicKey?: string; issuer?: string }): JwtVerifier {
  let key: Promise<webcrypto.CryptoKey> | KeyObject;
  let algorithm: JwtVerifier['algorithm'];
  if (opts.publicKey) {
    key = createPublicKey(opts.publicKey);
    const type = key.asymmetricKeyType;
    if (type === 'rsa') algorithm = 'RS256';
    else if (type === 'ec') algorithm = 'ES256';
    else throw new Error(`JWT_PUBLIC_KEY: unsupported key type ${type ?? 'unknown'} (use RSA or EC P-256)`);
  } else if (opts.secret) {
    // Imported once: given the secret's bytes, jose imports a key on every verify (a WebCrypto
    // import per request, and the objects it leaves for the collector); a KeyObject it caches.
    key = webcrypto.subtle.importKey('raw', new TextEncoder().encode(opts.secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);
    algorithm = 'HS256';
  } else {
    throw new Error('no JWT key configured');
  }
  return {
    algorithm,
    async verify(token) {
      let payload: unknown;
      try {
        // The algorithm is pinned: a token signed with anything else (or `none`) is refused.
        ({ payload } = await jwtVerify(token, await key, {
          algorithms: [algorithm],
          requiredClaims: ['exp', 'sub', 'role'],
          ...(opts.issuer ? { issuer: opts.issuer } : {}),
        }));
      } catch (err) {
        if (err instanceof joseErrors.JWTExpired) throw unauthorized('token expired');
        if (err instanceof joseErrors.JWTClaimValidationFailed) throw unauthorized(`token claim invalid: ${err.claim}`);
        throw unauthorized('token invalid');
      }
      const claims = claimsSchema.safeParse(payload);
      if (!claims.success) throw unauthorized('token claims invalid: role, sub, customerId (customers) and exp are required');
      const c = claims.data;
      const expiresAt = new Date(c.exp * 1000);
      return c.role === 'customer'
        ? { role: 'customer', sub: c.sub, customerId: c.customerId, expiresAt }
        : { role: c.role, sub: c.sub, expiresAt };
    },
  };
}

/** Mints an HS256 token; for the CLI, the newcomer's first admin token and tests. */
export async function mintToken(
  secret: string,
  claims: { sub: string; role: 'customer' | 'ops' | 'admin'; customerId?: string },
  ttlSeconds = 3600,
): Promise<string> {
  return new SignJWT({ role: claims.role, ...(claims.customerId ? { customerId: claims.customerId } : {}) })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(claims.sub)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
    .sign(new TextEncoder().encode(secret));
}
