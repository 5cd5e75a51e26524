import type { FastifyRequest } from 'fastify';

// Credentials belong in headers (redacted from logs), but clients also put them where they do
// not belong: a query string (`?access_token=`), a path, a request id. What is logged of a
// request is scrubbed of anything shaped like our keys or a JWT, and of the values of
// credential-named parameters.
const API_KEY = /osk_[0-9A-Za-z_-]*/g;
const JWT = /eyJ[0-9A-Za-z_-]*\.[0-9A-Za-z_-]*(\.[0-9A-Za-z_-]*)?/g;
const SECRET_PARAM = /([?&;](?:[^=&]*(?:token|key|secret|password|passwd|auth|jwt|signature|credential)[^=&]*)=)[^&#]*/gi;

export function scrubSecrets(text: string): string {
  return text.replace(SECRET_PARAM, '$1[redacted]').replace(API_KEY, 'osk_[redacted]').replace(JWT, '[redacted-jwt]');
}

/** Fastify's request log fields, with the url scrubbed. */
export function requestSerializer(req: FastifyRequest) {
  return {
    method: req.method,
    url: scrubSecrets(req.url),
    host: req.host,
    remoteAddress: req.ip,
    remotePort: req.socket?.remotePort,
  };
}
