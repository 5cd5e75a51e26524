import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { fieldErrors, problem, ProblemError, type FieldError, type Problem } from './problems.js';

// Fastify's own errors for malformed requests, by code, and what we answer.
const FASTIFY_CODES: Record<string, [number, string]> = {
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'body-too-large'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'unsupported-media-type'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'invalid-content-length'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'empty-body'],
  FST_ERR_CTP_INVALID_JSON_BODY: [400, 'malformed-json'],
  FST_ERR_CTP_INVALID_TYPE: [400, 'invalid-content-type'],
  FST_ERR_CTP_EMPTY_TYPE: [400, 'invalid-content-type'],
  FST_ERR_BAD_URL: [400, 'bad-url'],
  FST_ERR_ASYNC_CONSTRAINT: [400, 'bad-request'],
  // @fastify/compress, for request bodies (http/compression.ts).
  FST_CP_ERR_INVALID_CONTENT_ENCODING: [415, 'unsupported-content-encoding'],
  FST_CP_ERR_INVALID_CONTENT: [400, 'malformed-compressed-body'],
};

const DB_UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', '57P01', '57P02', '57P03', '53300', '57014']);

/** True when the error means the database cannot serve now (down, restarting, overloaded, timed out). */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && (DB_UNAVAILABLE_CODES.has(code) || code.startsWith('08'))) return true;
  const message = (err as { message?: unknown }).message;
  return (
    typeof message === 'string' &&
    /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|connection is closed/i.test(
      message,
    )
  );
}

function toProblem(err: FastifyError | Error, req: FastifyRequest): { problem: Problem; headers?: Record<string, string> } {
  if (err instanceof ProblemError) return { problem: err.toProblem(), headers: err.headers };
  if (hasZodFastifySchemaValidationErrors(err)) {
    const context = (err as { validationContext?: string }).validationContext ?? 'body';
    const prefix = context === 'querystring' ? 'query' : context;
    const errors: FieldError[] = err.validation.flatMap((v) =>
      fieldErrors(
        [
          {
            path: v.instancePath.split('/').filter(Boolean).map((s) => (/^\d+$/.test(s) ? Number(s) : s)),
            code: v.keyword,
            message: v.message ?? 'invalid',
            keys: (v.params as { keys?: string[] }).keys,
          },
        ],
        prefix,
      ),
    );
    const where = errors.map((e) => e.path).join(', ');
    return { problem: problem(400, 'validation-failed', `invalid ${where}`, errors) };
  }
  const code = (err as FastifyError).code;
  const known = code ? FASTIFY_CODES[code] : undefined;
  if (known) return { problem: problem(known[0], known[1], err.message) };
  if (err instanceof SyntaxError) return { problem: problem(400, 'malformed-json', err.message) };
  const pgCode = (err as { code?: unknown }).code;
  if (pgCode === '23505') return { problem: problem(409, 'already-exists', 'a resource with these values already exists') };
  if (pgCode === '40001' || pgCode === '40P01') {
    return { problem: problem(503, 'retry', 'the write collided with another; retry'), headers: { 'retry-after': '1' } };
  }
  // A value the database refuses as data (out of range, malformed) came from the request: a 400,
  // never a 500. Each one is logged, since the schemas should have caught it first.
  if (typeof pgCode === 'string' && pgCode.startsWith('22') && (err as { severity?: unknown }).severity) {
    req.log.warn({ code: pgCode, reason: err.message }, 'a value reached the database that the schemas let through');
    return { problem: problem(400, 'invalid-value', 'a value in the request is out of range or malformed') };
  }
  if (isDatabaseUnavailable(err)) {
    return { problem: problem(503, 'database-unavailable', 'the database is unavailable; retry later'), headers: { 'retry-after': '2' } };
  }
  const status = (err as FastifyError).statusCode;
  if (status && status >= 400 && status < 500) return { problem: problem(status, 'bad-request', err.message) };
  req.log.error({ err }, 'unhandled error');
  return { problem: problem(500, 'internal', 'an internal error occurred; quote the request id when reporting it') };
}

export function sendProblem(reply: FastifyReply, p: Problem, headers?: Record<string, string>) {
  if (headers) reply.headers(headers);
  return reply
    .status(p.status)
    .type('application/problem+json')
    .send({ ...p, instance: reply.request.url.split('?')[0], requestId: reply.request.id });
}

/** Errors Fastify raises before routing (a malformed URL, a too-long parameter), as problem+json too. */
export const frameworkErrors = (err: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
  const status = err.statusCode && err.statusCode < 500 ? err.statusCode : 400;
  return sendProblem(reply, problem(status, 'bad-url', err.message));
};

/** Every error leaves as application/problem+json; 5xx details stay in the logs. */
export function registerErrorHandling(app: FastifyInstance) {
  app.setErrorHandler((err: FastifyError, req, reply) => {
    const { problem: p, headers } = toProblem(err, req);
    if (p.status >= 500 && p.status !== 503) req.log.error({ err }, 'request failed');
    return sendProblem(reply, p, headers);
  });
  app.setNotFoundHandler((req, reply) =>
    sendProblem(reply, problem(404, 'not-found', `no route ${req.method} ${req.url.split('?')[0]}`)),
  );
}
