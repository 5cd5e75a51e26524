import type { Kysely } from 'kysely';
import { z } from 'zod';
import type { Principal } from '../auth/principal.js';
import type { DB } from '../db/schema.js';
import type { Event } from '../events/schemas.js';
import { forbidden, notFound, ProblemError } from '../http/problems.js';
import { stepsOf } from '../orders/repository.js';
import { maySee } from '../orders/service.js';

/** What a stream follows: one order, one customer's orders, one factory's orders, or everything. */
export type Topic = { kind: 'order' | 'customer' | 'factory'; id: string } | { kind: 'all' };

/** An event as the streams carry it: with what decides who may see it. */
export interface StreamEvent {
  event: Event;
  customerId: string;
  /** The factories the order is routed to now. */
  factoryIds: string[];
}

const uuid = z.uuid();

export function parseTopic(text: unknown): Topic | undefined {
  if (text === 'all') return { kind: 'all' };
  if (typeof text !== 'string') return undefined;
  const m = /^(order|customer|factory):(.+)$/.exec(text);
  if (!m || !uuid.safeParse(m[2]).success) return undefined;
  return { kind: m[1] as 'order' | 'customer' | 'factory', id: m[2]!.toLowerCase() };
}

export const topicName = (t: Topic) => (t.kind === 'all' ? 'all' : `${t.kind}:${t.id}`);

export const topicError = () =>
  new ProblemError(400, 'invalid-topic', 'topic must be order:<uuid>, customer:<uuid>, factory:<uuid> or all');

/** The same rules as REST: a topic the caller may not know exists is a 404; a kind it may not use is a 403. */
export async function authorizeTopic(db: Kysely<DB>, p: Principal, topic: Topic): Promise<void> {
  const staff = p.role === 'ops' || p.role === 'admin';
  switch (topic.kind) {
    case 'all':
      if (!staff) throw forbidden('the all topic is for ops');
      return;
    case 'customer':
      if (staff || (p.role === 'customer' && p.customerId === topic.id)) return;
      if (p.role === 'customer') throw notFound('customer');
      throw forbidden('factories follow factory or order topics');
    case 'factory':
      if (staff || (p.role === 'factory' && p.factoryId === topic.id)) return;
      throw forbidden('only that factory and ops follow a factory topic');
    case 'order': {
      const row = await db.selectFrom('orders').select('customer_id').where('id', '=', topic.id).executeTakeFirst();
      const steps = row ? ((await stepsOf(db, [topic.id])).get(topic.id) ?? []) : [];
      if (!row || !maySee(p, row, steps)) throw notFound('order');
    }
  }
}

/** Whether the caller may see this event at all (checked on every delivery: routes change). */
export function visibleTo(p: Principal, e: StreamEvent): boolean {
  switch (p.role) {
    case 'ops':
    case 'admin':
      return true;
    case 'customer':
      return e.customerId === p.customerId;
    case 'factory':
      return e.factoryIds.includes(p.factoryId) || e.event.factoryId === p.factoryId;
  }
}

export function inTopic(t: Topic, e: StreamEvent): boolean {
  switch (t.kind) {
    case 'all':
      return true;
    case 'order':
      return e.event.orderId === t.id;
    case 'customer':
      return e.customerId === t.id;
    case 'factory':
      return e.factoryIds.includes(t.id) || e.event.factoryId === t.id;
  }
}
