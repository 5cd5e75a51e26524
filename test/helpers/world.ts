import { expect } from 'vitest';
import { z } from 'zod';
import { eventSchema } from '../../src/events/schemas.js';
import type { TestApp } from './app.js';
import type { ApiClient } from './http.js';

const strictEvent = z.strictObject(eventSchema.shape);

/** A small, fixed network to test against: two customers, three factories, their keys and tokens. */
export interface World {
  admin: ApiClient;
  ops: ApiClient;
  anonymous: ApiClient;
  customerA: { id: string; engineerId: string; api: ApiClient };
  customerB: { id: string; api: ApiClient };
  fab: { id: string; keyId: string; api: ApiClient };
  assembly: { id: string; keyId: string; api: ApiClient };
  logistics: { id: string; keyId: string; api: ApiClient };
  /** An ops-created order of customer A on the standard route; returns the Order. */
  createOrder(overrides?: Record<string, unknown>, headers?: Record<string, string>): Promise<any>;
  /** Posts an event as `api`, expecting `status`; returns the body. */
  post(api: ApiClient, orderId: string, event: Record<string, unknown>, status?: number, key?: string): Promise<any>;
}

/** Fabrication and assembly in parallel, then placement, then shipping: the shape of a PCBA order. */
export function standardRoute(w: Pick<World, 'fab' | 'assembly' | 'logistics'>) {
  return [
    { stage: 'review', factoryId: w.fab.id, plannedHours: 0.5 },
    { stage: 'cam', factoryId: w.fab.id, plannedHours: 2 },
    { stage: 'drilling', factoryId: w.fab.id, plannedHours: 2 },
    { stage: 'components', factoryId: w.assembly.id, plannedHours: 24, after: [] },
    { stage: 'smt', factoryId: w.assembly.id, plannedHours: 4, after: ['drilling', 'components'] },
    { stage: 'shipping', factoryId: w.logistics.id, plannedHours: 24 },
  ];
}

export async function createWorld(t: Pick<TestApp, 'api' | 'token'>): Promise<World> {
  const admin = t.api.as(await t.token({ role: 'admin' }));
  const ops = t.api.as(await t.token({ role: 'ops' }));
  const mk = async (path: string, body: unknown) => {
    const r = await admin.post(path, body);
    expect(r.status, r.text).toBe(201);
    return r.body;
  };
  const a = await mk('/v1/customers', { name: 'Acme Robotics', country: 'DE' });
  const engineer = await mk(`/v1/customers/${a.id}/engineers`, { name: 'Ada', email: 'ada@acme.example' });
  const b = await mk('/v1/customers', { name: 'Bolt Labs', country: 'US' });
  const factory = async (name: string, kind: string) => {
    const f = await mk('/v1/factories', { name, kind, country: 'CN', timezone: 'Asia/Shanghai' });
    const k = await mk(`/v1/factories/${f.id}/api-keys`, { label: 'mes' });
    return { id: f.id as string, keyId: k.id as string, api: t.api.as({ apiKey: k.key }) };
  };
  const fab = await factory('Shangrao PCB 1', 'fabrication');
  const assembly = await factory('Shangrao SMT 2', 'assembly');
  const logistics = await factory('Jiangxi Logistics', 'logistics');
  const world: World = {
    admin,
    ops,
    anonymous: t.api,
    customerA: { id: a.id, engineerId: engineer.id, api: t.api.as(await t.token({ role: 'customer', customerId: a.id })) },
    customerB: { id: b.id, api: t.api.as(await t.token({ role: 'customer', customerId: b.id })) },
    fab,
    assembly,
    logistics,
    async createOrder(overrides = {}, headers) {
      const r = await ops.post(
        '/v1/orders',
        {
          customerId: a.id,
          engineerId: engineer.id,
          product: '4-layer FR4 100x80mm',
          quantity: 50,
          promisedAt: new Date(Date.now() + 7 * 86400_000).toISOString(),
          route: standardRoute({ fab, assembly, logistics }),
          ...overrides,
        },
        headers,
      );
      expect(r.status, r.text).toBe(201);
      return r.body;
    },
    async post(api, orderId, event, status = 201, key) {
      const r = await api.post(`/v1/orders/${orderId}/events`, event, key ? { 'idempotency-key': key } : undefined);
      expect(r.status, r.text).toBe(status);
      // The answer is written without a response check (events/routes.ts): no field more or less.
      if (status < 300) expect(strictEvent.safeParse(r.body).error?.issues, r.text).toBeUndefined();
      return r.body;
    },
  };
  return world;
}
