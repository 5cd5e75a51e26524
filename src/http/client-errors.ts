import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { problem } from './problems.js';

// Node's HTTP parser refuses a request before Fastify sees it (a bad header byte, conflicting
// lengths, headers too large, a client too slow). Fastify's default answer is plain JSON of its
// own shape; ours is problem+json like every other error, and the connection is closed.
const BY_CODE: Record<string, [number, string, string]> = {
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'request-timeout', 'the request was not received in time'],
  HPE_HEADER_OVERFLOW: [431, 'headers-too-large', 'the request headers are too large'],
};

export function clientErrorHandler(this: FastifyInstance, err: Error & { code?: string }, socket: Socket) {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, slug, detail] = BY_CODE[err.code ?? ''] ?? [400, 'malformed-request', 'the request is not valid HTTP/1.1'];
  this.log.debug({ code: err.code }, 'client error');
  if (socket.writable) {
    const body = JSON.stringify(problem(status, slug, detail));
    const reason = status === 408 ? 'Request Timeout' : status === 431 ? 'Request Header Fields Too Large' : 'Bad Request';
    socket.write(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(err);
}
