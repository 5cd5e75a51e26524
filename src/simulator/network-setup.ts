import type { FactoryKind } from '../world/catalogue.js';
import { problemDetail, type ApiClient, type ApiReply, type Credentials } from './api-client.js';

export const FACTORY_KINDS: readonly FactoryKind[] = ['fabrication', 'assembly', 'components', 'testing', 'logistics'];

export interface SimCustomer {
  id: string;
  engineers: string[];
}

export interface FactoryKey {
  keyId: string;
  key: string;
}

/** The part of the network a run uses: its customers, its factories by kind, one API key per factory. */
export interface Network {
  customers: SimCustomer[];
  factories: Record<FactoryKind, string[]>;
  keys: Map<string, FactoryKey>;
}

interface Page<T> {
  items: T[];
}

const FACTORY_SITES = [
  ['CN', 'Asia/Shanghai', 'Shenzhen'],
  ['CN', 'Asia/Shanghai', 'Suzhou'],
  ['VN', 'Asia/Ho_Chi_Minh', 'Hai Phong'],
  ['TW', 'Asia/Taipei', 'Taoyuan'],
  ['MY', 'Asia/Kuala_Lumpur', 'Penang'],
  ['DE', 'Europe/Berlin', 'Dresden'],
] as const;
const CUSTOMER_COUNTRIES = ['US', 'DE', 'GB', 'JP', 'FR', 'IN', 'KR', 'CA', 'NL', 'BR'];

function expect2xx<T>(what: string, reply: ApiReply<unknown>): T {
  if (reply.status < 200 || reply.status > 299) {
    throw new Error(`setup: ${what} answered ${reply.status}: ${problemDetail(reply.body)}`);
  }
  return reply.body as T;
}

/**
 * Finds or creates, through the API as admin, the customers and factories a run needs, and gives
 * each factory a fresh API key: keys are shown only once, so a run cannot reuse another's.
 */
export async function setUpNetwork(
  api: ApiClient,
  admin: Credentials,
  o: { customers: number; factoriesPerKind: number; runTag: string },
): Promise<Network> {
  const get = async <T>(path: string) => expect2xx<T>(`GET ${path}`, await api.request('GET', path, { credentials: admin }));
  const post = async <T>(path: string, body: unknown) =>
    expect2xx<T>(`POST ${path}`, await api.request('POST', path, { credentials: admin, body }));

  const listed = await get<Page<{ id: string }>>(`/v1/customers?limit=${Math.min(200, o.customers)}`);
  const customers: SimCustomer[] = [];
  for (const c of listed.items.slice(0, o.customers)) {
    const engineers = await get<Page<{ id: string }>>(`/v1/customers/${c.id}/engineers`);
    customers.push({ id: c.id, engineers: engineers.items.map((e) => e.id) });
  }
  for (let i = customers.length; i < o.customers; i++) {
    const country = CUSTOMER_COUNTRIES[i % CUSTOMER_COUNTRIES.length]!;
    const c = await post<{ id: string }>('/v1/customers', { name: `Simulated customer ${country}-${i + 1}`, country });
    const e = await post<{ id: string }>(`/v1/customers/${c.id}/engineers`, {
      name: `Engineer ${i + 1}`,
      email: `engineer${i + 1}@customer-${c.id.slice(0, 8)}.example`,
    });
    customers.push({ id: c.id, engineers: [e.id] });
  }

  const factories = Object.fromEntries(FACTORY_KINDS.map((k) => [k, [] as string[]])) as Record<FactoryKind, string[]>;
  for (const kind of FACTORY_KINDS) {
    const page = await get<Page<{ id: string }>>(`/v1/factories?kind=${kind}&limit=${Math.min(200, o.factoriesPerKind)}`);
    factories[kind].push(...page.items.slice(0, o.factoriesPerKind).map((f) => f.id));
    for (let i = factories[kind].length; i < o.factoriesPerKind; i++) {
      const [country, timezone, city] = FACTORY_SITES[i % FACTORY_SITES.length]!;
      const f = await post<{ id: string }>('/v1/factories', {
        name: `${city} ${kind} works ${i + 1} (simulated)`,
        kind,
        country,
        timezone,
      });
      factories[kind].push(f.id);
    }
  }

  const keys = new Map<string, FactoryKey>();
  for (const id of Object.values(factories).flat()) {
    const k = await post<{ id: string; key: string }>(`/v1/factories/${id}/api-keys`, { label: `simulator ${o.runTag}` });
    keys.set(id, { keyId: k.id, key: k.key });
  }
  return { customers, factories, keys };
}

/** Revokes the run's keys; best effort, so a stopping run still ends. */
export async function revokeKeys(api: ApiClient, admin: Credentials, network: Network): Promise<number> {
  let revoked = 0;
  for (const { keyId } of network.keys.values()) {
    try {
      const r = await api.request('DELETE', `/v1/api-keys/${keyId}`, { credentials: admin });
      if (r.status === 204) revoked++;
    } catch {
      // The service may be going away as well; the keys then die with the demo's database.
    }
  }
  return revoked;
}
