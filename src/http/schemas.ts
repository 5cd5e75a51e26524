import type { FastifyReply } from 'fastify';
// The codes only: the package's main entry also loads the names in 79 languages (1 MB).
import countries from 'i18n-iso-countries/index.js';
import { z } from 'zod';

// Building blocks shared by every capability's request and response schemas.

export const uuid = z.uuid();
export const idParams = z.object({ id: z.uuid() });

/** ISO 3166-1 alpha-2, upper case (lower case is accepted and normalised). */
export const countryCode = z
  .string()
  .length(2)
  .transform((s) => s.toUpperCase())
  .refine((s) => countries.isValid(s), 'must be an ISO 3166-1 alpha-2 country code');

/** A bounded, trimmed, printable line of text: no control characters, no NUL bytes, valid Unicode. */
export const text = (max: number) =>
  z
    .string()
    .trim()
    .min(1)
    .max(max)
    .refine((s) => !/[\u0000-\u001f\u007f]/.test(s), 'must not contain control characters')
    .refine((s) => s.isWellFormed(), 'must be valid Unicode (no lone surrogates)');

/** RFC 3339 with an offset, between the years 2000 and 2100: anything else is a mistake, not an order. */
export const isoDateTime = z.iso
  .datetime({ offset: true })
  .refine((s) => {
    const t = Date.parse(s);
    return t >= Date.UTC(2000, 0, 1) && t < Date.UTC(2100, 0, 1);
  }, 'must be between 2000-01-01 and 2100-01-01');
export const timestamp = z.date().transform((d) => d.toISOString()).pipe(z.string());

export const problemSchema = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  detail: z.string().optional(),
  errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
});

/**
 * The serializer of a route whose answers our code builds to its response schema's type (toOrder,
 * toEvent, toProblem): written as they are. fastify-type-provider-zod's encode re-checks every
 * field of every item, a tenth of a list request (bench profile); the tests hold these answers to
 * the schema made strict instead.
 */
export const writtenAsBuilt = () => (data: unknown) => JSON.stringify(data);

/**
 * Sends JSON a route wrote itself, as text or bytes (orders/list.ts pageJson), past the route's
 * serializer and the type its response schema gives: the tests hold these answers to the schema
 * made strict.
 */
export const sendJson = (reply: FastifyReply, json: string | Buffer) => reply.type('application/json; charset=utf-8').send(json as never);
