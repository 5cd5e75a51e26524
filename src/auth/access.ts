import { forbidden } from '../http/problems.js';
import type { Principal, Role } from './principal.js';

/** Refuses unless the caller has one of the roles; `admin` always passes where `ops` does. */
export function requireRole<R extends Role>(p: Principal, ...roles: R[]): asserts p is Extract<Principal, { role: R }> {
  const allowed = roles as Role[];
  if (allowed.includes(p.role) || (p.role === 'admin' && allowed.includes('ops'))) return;
  throw forbidden(`this action needs the role ${roles.join(' or ')}`);
}
