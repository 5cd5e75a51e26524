import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';

// A factory key reads `osk_<key id, 32 hex>_<secret, 43 base64url chars>`. The id finds the row;
// only SHA-256(secret) is stored, so a database leak reveals no usable key. The secret carries
// 256 random bits, which is why a fast hash is enough (no password stretching is needed).
const KEY_PATTERN = /^osk_([0-9a-f]{32})_([A-Za-z0-9_-]{43})$/;

export interface NewApiKey {
  id: string;
  key: string;
  secretHash: Buffer;
}

const hash = (secret: string) => createHash('sha256').update(secret).digest();

export function generateApiKey(): NewApiKey {
  const id = randomUUID();
  const secret = randomBytes(32).toString('base64url');
  return { id, key: `osk_${id.replaceAll('-', '')}_${secret}`, secretHash: hash(secret) };
}

/** Splits a presented key; undefined when it cannot be one of ours. */
export function parseApiKey(key: string): { id: string; secret: string } | undefined {
  const m = KEY_PATTERN.exec(key);
  return m ? { id: toUuid(m[1]!), secret: m[2]! } : undefined;
}

/** Constant-time comparison of a presented secret with the stored hash. */
export function secretMatches(secret: string, storedHash: Uint8Array): boolean {
  const presented = hash(secret);
  return storedHash.length === presented.length && timingSafeEqual(presented, storedHash);
}

function toUuid(hex: string): string {
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
