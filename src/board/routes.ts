// The live operations board: one static page (HTML, CSS, JS modules, no build step) and the two
// browser libraries it uses, served from the installed packages. The page is public; the data it
// shows comes from the authenticated API with the ops token the viewer gives it.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

const require = createRequire(import.meta.url);

/** Only this origin, and no inline script or style: every script and sheet is a file below. */
export const BOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * The page's own files: next to this module when run from source (src/board/public), and next
 * to the bundle when built (scripts/bundle.ts copies them to dist/public).
 */
function publicDir(): string {
  const dir = join(dirname(fileURLToPath(import.meta.url)), 'public');
  if (!existsSync(join(dir, 'index.html'))) throw new Error(`board: index.html not found in ${dir}`);
  return dir;
}

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

function asset(file: string, type: string): Asset {
  const body = readFileSync(file);
  // Weak: the same tag goes with the plain asset and with each compressed form of it
  // (http/compression.ts), and a strong one names one exact sequence of bytes (RFC 9110 8.8.1).
  return { body, type, etag: `W/"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` };
}

/** `GET /board` and its assets under `/board/`. Public: register it outside the authenticated context. */
export async function boardRoutes(app: FastifyInstance) {
  const dir = publicDir();
  const js = 'text/javascript; charset=utf-8';
  const page = asset(join(dir, 'index.html'), 'text/html; charset=utf-8');
  const assets: Record<string, Asset> = {
    'board.js': asset(join(dir, 'board.js'), js),
    'board.css': asset(join(dir, 'board.css'), 'text/css; charset=utf-8'),
    'favicon.svg': asset(join(dir, 'favicon.svg'), 'image/svg+xml'),
    // socket.io-client exports only its package.json and socket.io.js: find dist/ from the former.
    'vendor/socket.io.esm.min.js': asset(
      join(dirname(require.resolve('socket.io-client/package.json')), 'dist', 'socket.io.esm.min.js'),
      js,
    ),
    // chart.js resolves to dist/chart.cjs; its browser build (global `Chart`) sits beside it.
    'vendor/chart.umd.min.js': asset(join(dirname(require.resolve('chart.js')), 'chart.umd.min.js'), js),
  };

  const send = (req: FastifyRequest, reply: FastifyReply, a: Asset) => {
    reply
      .header('content-security-policy', BOARD_CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-cache')
      .header('etag', a.etag);
    if (req.headers['if-none-match'] === a.etag) return reply.code(304).send();
    return reply.type(a.type).send(a.body);
  };

  const hide = { schema: { hide: true } } as const;
  app.get('/board', hide, (req, reply) => send(req, reply, page));
  app.get('/board/', hide, (req, reply) => send(req, reply, page));
  for (const [name, a] of Object.entries(assets)) {
    app.get(`/board/${name}`, hide, (req, reply) => send(req, reply, a));
  }
}
