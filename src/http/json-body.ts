import type { FastifyInstance } from 'fastify';
import { jsonPath, ProblemError } from './problems.js';

/**
 * The path of the first object key that appears twice in a JSON text (already known to be
 * valid JSON), if any. Parsers disagree on duplicates (first wins, last wins), so a body that has
 * them means different things to different readers along the way: we refuse it.
 */
const [QUOTE, BACKSLASH, OPEN_OBJECT, OPEN_ARRAY, CLOSE_OBJECT, CLOSE_ARRAY, COMMA] = [...'"\\{[}],'].map((ch) => ch.charCodeAt(0));

export function duplicateKey(json: string): Array<string | number> | undefined {
  // One frame per open object (its keys so far, and the key being read) or array (its index).
  // Character codes, and a string's end found with indexOf: this runs on every request body.
  const stack: Array<{ keys: Set<string> | null; at: string | number }> = [];
  let expectKey = false;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (c === QUOTE) {
      let j = json.indexOf('"', i + 1);
      for (;;) {
        let backslashes = 0;
        while (json.charCodeAt(j - 1 - backslashes) === BACKSLASH) backslashes++;
        if (backslashes % 2 === 0) break; // an odd run of backslashes escapes this quote
        j = json.indexOf('"', j + 1);
      }
      const top = stack.at(-1);
      if (top?.keys && expectKey) {
        // A key with escapes is compared decoded: "a\u0062" and "ab" are the same key.
        const raw = json.slice(i + 1, j);
        const key = raw.includes('\\') ? (JSON.parse(json.slice(i, j + 1)) as string) : raw;
        top.at = key;
        if (top.keys.has(key)) return stack.map((f) => f.at);
        top.keys.add(key);
        expectKey = false;
      }
      i = j;
    } else if (c === OPEN_OBJECT) {
      stack.push({ keys: new Set(), at: '' });
      expectKey = true;
    } else if (c === OPEN_ARRAY) {
      stack.push({ keys: null, at: 0 });
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      stack.pop();
    } else if (c === COMMA) {
      const top = stack.at(-1);
      if (top && !top.keys) top.at = (top.at as number) + 1;
      expectKey = Boolean(top?.keys);
    }
  }
  return undefined;
}

/** Fastify's JSON parser (with its prototype-poisoning guards), plus the refusal of duplicate keys. */
export function registerJsonParser(app: FastifyInstance) {
  const parse = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    parse(req, body as string, (err, value) => {
      if (err) return done(err, undefined);
      const dup = duplicateKey(body as string);
      if (dup !== undefined) {
        const path = jsonPath(dup, 'body');
        return done(
          new ProblemError(400, 'duplicate-key', `${path} appears more than once in the JSON body`, {
            errors: [{ path, message: 'appears more than once' }],
          }),
          undefined,
        );
      }
      done(null, value);
    });
  });
}
