import compress from '@fastify/compress';
import type { FastifyInstance } from 'fastify';
import { constants } from 'node:zlib';

/** The encodings answers may be compressed with (the server's preference first), and bodies sent in. */
const ENCODINGS: Array<'br' | 'gzip' | 'deflate'> = ['br', 'gzip', 'deflate'];

/**
 * Answers are compressed for clients that ask (`Accept-Encoding`), and request bodies may arrive
 * compressed (`Content-Encoding`). A late-list page of 50 orders is some 365 KB of JSON: a
 * portal across the world waits for every byte of it, and it is some 42 KB as brotli.
 *
 * The fastest levels, because the service shares its cores with Postgres: on such a page brotli
 * at quality 1 took 0.55 ms for 8.8x against 1.8 ms for 10.3x at the plugin's default 4, and
 * gzip at level 1 1.6 ms for 7.0x against 3.5 ms for 9.1x at zlib's default 6 (BENCHMARKS.md).
 * Answers under 1 KB (a posted event's) go as they are, and so do the streams: SSE writes its
 * own response, Socket.IO has its own transport.
 *
 * Every buffered answer (the largest, a 200-order page, is about 1.5 MB) is compressed in one
 * call on the event loop, not through a zlib stream on libuv's threadpool, the plugin's default
 * above 8 KB on two cores: the pool's hops cost more than they overlap on cores Postgres shares.
 * A brotli late-list page, 300 requests in a row on the small world: p50 9.8-10.1 / p99
 * 16.6-17.5 ms in one call, 10.8-11.5 / 33.5-36.6 ms streamed (plain 8.4-9.0 / 17.7-22.0).
 *
 * A compressed body counts against the body limit as what it inflates to (Fastify counts the
 * bytes it parses), so a small bomb is refused like a large body. Registered before any route:
 * it attaches itself to the routes as they are added.
 */
export async function registerCompression(app: FastifyInstance) {
  await app.register(compress, {
    encodings: ENCODINGS,
    threshold: 1024,
    syncThreshold: 2 * 1024 * 1024,
    brotliOptions: { params: { [constants.BROTLI_PARAM_QUALITY]: 1 } },
    zlibOptions: { level: 1 },
    requestEncodings: [...ENCODINGS, 'identity'],
  });
}
