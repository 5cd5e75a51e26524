import type { FastifyInstance } from 'fastify';
import { jsonPath, ProblemError } from './problems.js';

/**
 * The path of the first object key that appears twice in a JSON text (already known to be
 * valid JSON), if any. Parsers disagree on duplicates (first wins, last wins), so a body that has
 * them means different things to different readers along the way: we refuse it.
 */
export function duplicateKey(json: string): Array<string | number> | undefined {
  // One frame per open object (its keys so far, and the key being read) or array (its index).
  const stack: Array<{ keys: Set<string> | null; at: string | number }> = [];
  let expectKey = false;
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (c === '"') {
      let j = i + 1;
      while (json[j] !== '"') j += json[j] === '\\' ? 2 : 1;
      const top = stack.at(-1);
      if (top?.keys && expectKey) {
        const key = JSON.parse(json.slice(i, j + 1)) as string;
        top.at = key;
        if (top.keys.has(key)) return stack.map((f) => f.at);
        top.keys.add(key);
        expectKey = false;
      }
      i = j;
    } else if (c === '{') {
      stack.push({ keys: new Set(), at: '' });
      expectKey = true;
    } else if (c === '[') {
      stack.push({ keys: null, at: 0 });
    } else if (c === '}' || c === ']') {
      stack.pop();
    } else if (c === ',') {
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
