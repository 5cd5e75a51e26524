/** Who is calling, once their credentials are verified. */
export type Principal =
  | { role: 'customer'; sub: string; customerId: string; expiresAt: Date }
  | { role: 'ops' | 'admin'; sub: string; expiresAt: Date }
  | { role: 'factory'; factoryId: string; keyId: string };

export type Role = Principal['role'];

/** A stable name for a caller: the idempotency scope, the rate-limit bucket, the event's actor. */
export function principalId(p: Principal): string {
  if (p.role === 'factory') return `factory:${p.factoryId}`;
  // Each customer's portal mints its own subjects: two customers' `sub` may collide, and must not
  // share a rate-limit bucket or a stream allowance.
  if (p.role === 'customer') return `customer:${p.customerId}:${p.sub}`;
  return `${p.role}:${p.sub}`;
}

export const isStaff = (p: Principal): p is Extract<Principal, { role: 'ops' | 'admin' }> =>
  p.role === 'ops' || p.role === 'admin';
