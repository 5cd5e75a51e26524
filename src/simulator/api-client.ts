import { setTimeout as delay } from 'node:timers/promises';
import type { StatsRecorder } from './stats.js';

export interface Credentials {
  token?: string;
  apiKey?: string;
}

export interface ApiReply<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
}

/** An RFC 9457 problem, as far as the simulator reads one. */
export interface ProblemBody {
  type?: string;
  title?: string;
  detail?: string;
}

/** The last part of a problem's type URI: `…/problems/stage-done` → `stage-done`. */
export const problemType = (body: unknown): string =>
  ((body as ProblemBody | null)?.type ?? 'unknown').split('/').at(-1) ?? 'unknown';

export const problemDetail = (body: unknown): string => {
  const p = body as ProblemBody | null;
  return p?.detail ?? p?.title ?? (typeof body === 'string' ? body.slice(0, 200) : 'no detail');
};

const MAX_ATTEMPTS = 8;
const MAX_BACKOFF_MS = 30_000;

/**
 * fetch with what a careful factory system does: a timeout per request, and retries of the very
 * same request (same body, same Idempotency-Key) on 429, 503 and network failures, waiting as
 * long as Retry-After says, else backing off exponentially with jitter. Every response counts.
 */
export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly stats: StatsRecorder,
    private readonly signal: AbortSignal,
    private readonly timeoutMs = 30_000,
  ) {}

  async request<T = unknown>(
    method: string,
    path: string,
    opts: { credentials: Credentials; body?: unknown; idempotencyKey?: string },
  ): Promise<ApiReply<T>> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (opts.credentials.token) headers.authorization = `Bearer ${opts.credentials.token}`;
    if (opts.credentials.apiKey) headers['x-api-key'] = opts.credentials.apiKey;
    if (opts.idempotencyKey) headers['idempotency-key'] = opts.idempotencyKey;
    const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    if (body !== undefined) headers['content-type'] = 'application/json';

    for (let attempt = 1; ; attempt++) {
      let res: Response;
      let text: string;
      try {
        res = await fetch(this.baseUrl + path, {
          method,
          headers,
          body,
          signal: AbortSignal.any([this.signal, AbortSignal.timeout(this.timeoutMs)]),
        });
        text = await res.text();
      } catch (err) {
        // Stopping is not a failure to retry; a timeout or a dropped connection is.
        if (this.signal.aborted) throw err;
        this.stats.networkError();
        if (attempt >= MAX_ATTEMPTS) throw err;
        this.stats.retries++;
        await delay(backoff(attempt), undefined, { signal: this.signal });
        continue;
      }
      this.stats.response(res.status);
      if ((res.status === 429 || res.status === 503) && attempt < MAX_ATTEMPTS) {
        this.stats.retries++;
        await delay(retryAfterMs(res.headers) ?? backoff(attempt), undefined, { signal: this.signal });
        continue;
      }
      let parsed: unknown = text;
      if ((res.headers.get('content-type') ?? '').includes('json') && text) {
        try {
          parsed = JSON.parse(text);
        } catch {
          // A proxy's HTML error page labelled as JSON: keep the text.
        }
      }
      return { status: res.status, headers: res.headers, body: parsed as T };
    }
  }
}

function backoff(attempt: number): number {
  const base = Math.min(MAX_BACKOFF_MS, 100 * 2 ** (attempt - 1));
  return base / 2 + Math.random() * (base / 2);
}

/** Retry-After in seconds or as an HTTP date; undefined when absent or unreadable. */
export function retryAfterMs(headers: Headers): number | undefined {
  const value = headers.get('retry-after');
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}
