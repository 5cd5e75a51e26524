// Generators of hostile input for the property tests, and the checks every answer must pass:
// never a 5xx, every refusal application/problem+json naming what is wrong, nothing written.
import fc from 'fast-check';
import { sql, type Kysely } from 'kysely';
import { expect } from 'vitest';
import type { DB } from '../../src/db/schema.js';

/** Strings that have broken parsers, databases and loggers before. */
export const NASTY_STRINGS = [
  '',
  ' ',
  '\u0000',
  'a\u0000b',
  '\ud800', // a lone surrogate: not valid UTF-8 once encoded
  'x\udfffy',
  '\u202e\u0301', // right-to-left override, a lone combining mark
  '\r\nSet-Cookie: a=b',
  "'; drop table orders; --",
  '" or 1=1 --',
  "1'); select pg_sleep(10); --",
  '$$; truncate events; $$',
  '\\x00\\',
  '%00%27',
  '../../etc/passwd',
  '${jndi:ldap://x}',
  '{{7*7}}',
  '<script>alert(1)</script>',
  '0000-01-01T00:00:00Z',
  '9999-12-31T23:59:59Z',
  '2024-02-30T00:00:00Z',
  '+275760-09-13T00:00:00.000Z',
  '00000000-0000-0000-0000-000000000000',
  'NaN',
  '-1',
  '1e309',
  'true',
  'null',
  '__proto__',
  'constructor',
];

export const NASTY_NUMBERS = [-1, 0, -0, 0.5, 1e308, -1e308, 2 ** 53 + 1, -(2 ** 63), 2 ** 31, Number.MIN_VALUE, 100_000_001, 2001, 101];

function nested(depth: number, leaf: unknown): unknown {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { a: v };
  return v;
}

/** One hostile JSON value: a nasty or huge string, an out-of-range number, deep or wide structure, anything. */
export const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(...NASTY_STRINGS),
  fc.constantFrom(...NASTY_NUMBERS),
  fc.constantFrom(null, true, false, [], {}, [null], { __proto__: null }),
  fc.string({ unit: 'grapheme', maxLength: 50 }),
  fc.string({ unit: 'binary', maxLength: 50 }), // any code point, lone surrogates included
  fc.integer({ min: 5_000, max: 100_000 }).map((n) => 'x'.repeat(n)), // huge strings
  fc.integer({ min: 100, max: 20_000 }).map((n) => Array.from({ length: n }, (_, i) => i)), // huge arrays
  fc.integer({ min: 10, max: 400 }).map((d) => nested(d, 'deep')), // deep nesting
  fc.jsonValue({ maxDepth: 3 }),
  fc.double(),
  fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map((b) => Number(b)),
);

/** Keys that a careless merge turns into prototype pollution, and keys no schema knows. */
export const HOSTILE_KEYS = ['__proto__', 'constructor', 'prototype', 'unknownField', '', ' ', 'a'.repeat(10_000), 'id', '$where'];

/** JSON text for a body with an own `__proto__` (JSON.stringify cannot produce one from a literal). */
export function withRawKey(body: Record<string, unknown>, key: string, value: unknown): string {
  const text = JSON.stringify(body);
  const entry = `${JSON.stringify(key)}:${JSON.stringify(value) ?? 'null'}`;
  return text === '{}' ? `{${entry}}` : `{${entry},${text.slice(1)}`;
}

/** Raw bodies that are not the JSON they claim to be, or are JSON of a nasty kind. */
export const rawBodies = (valid: string): Array<{ what: string; body: string | Uint8Array }> => [
  { what: 'invalid UTF-8 (0xff 0xfe)', body: new Uint8Array([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]) },
  { what: 'overlong UTF-8 NUL (0xc0 0x80)', body: Buffer.concat([Buffer.from('{"name":"a'), Buffer.from([0xc0, 0x80]), Buffer.from('"}')]) },
  { what: 'UTF-16 bytes', body: Buffer.from(valid, 'utf16le') },
  { what: 'a BOM before the JSON', body: `\ufeff${valid}` },
  { what: 'truncated JSON', body: valid.slice(0, Math.max(1, valid.length >> 1)) },
  { what: 'trailing garbage', body: `${valid}}` },
  { what: 'two documents', body: `${valid}${valid}` },
  { what: 'duplicate keys', body: `{${valid.slice(1, -1)},${valid.slice(1, -1)}}` },
  { what: '__proto__ pollution', body: withRawKey(JSON.parse(valid), '__proto__', { admin: true, role: 'admin' }) },
  { what: 'constructor.prototype pollution', body: withRawKey(JSON.parse(valid), 'constructor', { prototype: { admin: true } }) },
  { what: 'deep array nesting', body: `${'['.repeat(100_000)}${']'.repeat(100_000)}` },
  { what: 'deep object nesting', body: `${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}` },
  { what: 'NUL escaped in a string', body: valid.replace(/:"[^"]*"/, ':"a\\u0000b"') },
  { what: 'raw NUL byte', body: `${valid.slice(0, 2)}\u0000${valid.slice(2)}` },
  { what: 'lone surrogate escape', body: valid.replace(/:"[^"]*"/, ':"a\\ud800b"') },
  { what: 'JSON null', body: 'null' },
  { what: 'JSON array', body: `[${valid}]` },
  { what: 'JSON string', body: JSON.stringify(valid) },
  { what: 'a number', body: '1e999' },
  { what: 'empty', body: '' },
  { what: 'whitespace', body: ' \n\t ' },
  { what: 'single quotes', body: valid.replaceAll('"', "'") },
  { what: 'comments', body: `/* x */${valid}` },
];

/** Content types a client may send with a perfectly good JSON text. */
export const CONTENT_TYPES = [
  undefined,
  'text/plain',
  'text/html',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/xml',
  'application/json; charset=utf-16',
  'application/json; charset=latin1',
  'application/vnd.api+json',
  'application/json-patch+json',
  'application/octet-stream',
  'application/json, text/plain',
  'application',
  '*/*',
  ';;;',
];

/** Rows of every table, the sum of every order's last seq, revocations and the last update: any write moves one. */
export async function fingerprint(db: Kysely<DB>): Promise<string> {
  const { rows } = await sql<Record<string, unknown>>`
    select (select count(*) from customers) as customers, (select count(*) from engineers) as engineers,
           (select count(*) from factories) as factories, (select count(*) from api_keys) as keys,
           (select count(*) from api_keys where revoked_at is not null) as revoked,
           (select count(*) from orders) as orders, (select coalesce(sum(last_seq), 0) from orders) as seqs,
           (select max(updated_at) from orders) as updated, (select count(*) from order_steps) as steps,
           (select count(*) from events) as events, (select count(*) from idempotency_keys) as keys_used`.execute(db);
  return JSON.stringify(rows[0]);
}

export interface Answer {
  status: number;
  contentType: string;
  text: string;
  body?: any;
}

export async function answerOf(res: Response): Promise<Answer> {
  const text = await res.text();
  const contentType = res.headers.get('content-type') ?? '';
  let body: unknown;
  if (contentType.includes('json')) body = JSON.parse(text);
  return { status: res.status, contentType, text, body };
}

/**
 * The contract of every answer to hostile input: no 5xx; a refusal is problem+json whose status
 * is the HTTP status, with a detail, and a validation failure names each field it refuses.
 */
export function expectWellRefused(a: Answer, what: string) {
  expect(a.status, `${what}: ${a.text.slice(0, 500)}`).toBeLessThan(500);
  if (a.status < 400) return;
  expect(a.contentType, what).toMatch(/^application\/problem\+json/);
  expect(a.body.status, what).toBe(a.status);
  expect(a.body.type, what).toMatch(/^https:\/\/orderstream\.dev\/problems\//);
  expect(a.body.detail, what).toEqual(expect.any(String));
  if (a.body.errors) {
    expect(a.body.errors.length, what).toBeGreaterThan(0);
    for (const e of a.body.errors) {
      expect(e.path, what).toEqual(expect.any(String));
      expect(e.path.length, what).toBeGreaterThan(0);
    }
  }
  if (String(a.body.type).endsWith('/validation-failed')) expect(a.body.errors, what).toBeDefined();
  // nothing of the internals: no stack, no SQL
  expect(a.text, what).not.toMatch(/\n\s+at |node_modules|\.ts:\d+|select .* from |insert into /i);
}
