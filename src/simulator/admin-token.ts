import { loadOrCreateDevSecret } from '../auth/dev-secret.js';
import { mintToken } from '../auth/jwt.js';
import { loadConfig } from '../config.js';

/**
 * A token minted the way `npm run token` does: with JWT_SECRET, else the development secret in
 * DATA_DIR, which a server started on the same DATA_DIR uses too.
 */
export async function mintLocalToken(
  role: 'admin' | 'ops',
  sub: string,
  ttlSeconds = 86_400,
): Promise<{ token: string; createdSecret: boolean }> {
  const config = loadConfig();
  if (config.JWT_PUBLIC_KEY) throw new Error('JWT_PUBLIC_KEY is set: pass --token, minted by the holder of the private key');
  if (config.JWT_SECRET) return { token: await mintToken(config.JWT_SECRET, { sub, role }, ttlSeconds), createdSecret: false };
  const { secret, created } = loadOrCreateDevSecret(config.DATA_DIR);
  return { token: await mintToken(secret, { sub, role }, ttlSeconds), createdSecret: created };
}
