// The Socket.IO protocol of namespace /v1, as types a TypeScript client can import and check.
import { z } from 'zod';
import type { Event } from '../events/schemas.js';

export type { Event } from '../events/schemas.js';
export type StreamedEvent = Event & { topic: string };

export const subscribePayload = z.strictObject({
  topic: z.string().max(100),
  after: z.string().max(64).optional(),
});
export const unsubscribePayload = z.strictObject({ topic: z.string().max(100) });

export type SubscribePayload = z.infer<typeof subscribePayload>;
export type UnsubscribePayload = z.infer<typeof unsubscribePayload>;

export interface AckError {
  status: number;
  title: string;
  detail?: string;
}

export type SubscribeAck = { ok: true; topic: string; cursor: string } | { ok: false; error: AckError };
export type UnsubscribeAck = { ok: true; topic: string } | { ok: false; error: AckError };

export interface ClientToServerEvents {
  subscribe(payload: SubscribePayload, ack: (reply: SubscribeAck) => void): void;
  unsubscribe(payload: UnsubscribePayload, ack: (reply: UnsubscribeAck) => void): void;
}

export interface ServerToClientEvents {
  /** One event of a subscribed topic, in cursor order within the topic. */
  event(e: StreamedEvent): void;
  /** Sent just before the server disconnects the socket, saying why. */
  closing(info: { reason: string }): void;
}

/** The handshake: a person's JWT or a factory's API key. */
export type HandshakeAuth = { token: string } | { apiKey: string };
