import { Pool } from 'undici';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import { nowMs } from './stats.js';

export interface Reply<T = unknown> {
  status: number;
  body: T;
  /** Until the whole answer was read and, if it came compressed, inflated: when a client can use it. */
  ms: number;
  /** The answer's body as it came over the wire. */
  bytes: number;
}

// undici's Pool neither asks for an encoding nor undoes one: a caller that asks inflates here.
const INFLATE: Record<string, (b: Buffer) => Buffer> = { br: brotliDecompressSync, gzip: gunzipSync, deflate: inflateSync };

/** A keep-alive HTTP client for one base URL, with as many connections as requests in flight. */
export class Http {
  private constructor(
    private readonly pool: Pool,
    readonly baseUrl: string,
    /** Sent with every request: the credentials this client presents. */
    readonly headers: Record<string, string>,
  ) {}

  static open(baseUrl: string, connections: number): Http {
    return new Http(new Pool(baseUrl, { connections, pipelining: 1, keepAliveTimeout: 60_000 }), baseUrl, {});
  }

  /** The same connections, with these headers on every request (credentials). */
  with(headers: Record<string, string>): Http {
    return new Http(this.pool, this.baseUrl, { ...this.headers, ...headers });
  }

  /**
   * With `decode` false, a successful answer is read to its end (and inflated) but not turned into
   * a string and parsed (body undefined): a timed loop of large answers then leaves no garbage in
   * this process whose collection would pause inside the next request it times.
   */
  async request<T = unknown>(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
    decode = true,
  ): Promise<Reply<T>> {
    const started = nowMs();
    const res = await this.pool.request({
      method,
      path,
      headers: { ...this.headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const wire = Buffer.from(await res.body.arrayBuffer());
    const encoding = res.headers['content-encoding'];
    const plain = typeof encoding === 'string' && INFLATE[encoding] ? INFLATE[encoding](wire) : wire;
    const ms = nowMs() - started;
    const ok = res.statusCode >= 200 && res.statusCode < 300;
    const text = decode || !ok ? plain.toString() : '';
    return { status: res.statusCode, body: (text ? JSON.parse(text) : undefined) as T, ms, bytes: wire.length };
  }

  get<T = unknown>(path: string, headers?: Record<string, string>) {
    return this.request<T>('GET', path, undefined, headers);
  }

  /** A GET timed for its answer alone: a successful body is read but not decoded (see request). */
  timedGet(path: string, headers?: Record<string, string>) {
    return this.request<undefined>('GET', path, undefined, headers, false);
  }

  post<T = unknown>(path: string, body: unknown, headers?: Record<string, string>) {
    return this.request<T>('POST', path, body, headers);
  }

  /** Like post, but a status other than `expected` throws with the body. */
  async expect<T = unknown>(expected: number, path: string, body: unknown, headers?: Record<string, string>): Promise<T> {
    const r = await this.post<T>(path, body, headers);
    if (r.status !== expected) throw new Error(`POST ${path}: ${r.status} ${JSON.stringify(r.body).slice(0, 500)}`);
    return r.body;
  }

  close() {
    return this.pool.close();
  }
}
