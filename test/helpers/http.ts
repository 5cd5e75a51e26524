/** A small client over real HTTP (fetch), returning status, headers and the parsed body. */
export interface Reply<T = any> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

export interface Credentials {
  token?: string;
  apiKey?: string;
}

export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly credentials: Credentials = {},
  ) {}

  as(credentials: Credentials | string): ApiClient {
    return new ApiClient(this.baseUrl, typeof credentials === 'string' ? { token: credentials } : credentials);
  }

  /** The same caller, talking to another instance. */
  at(baseUrl: string): ApiClient {
    return new ApiClient(baseUrl, this.credentials);
  }

  async request<T = any>(
    method: string,
    path: string,
    opts: { body?: unknown; raw?: string | Uint8Array; headers?: Record<string, string> } = {},
  ): Promise<Reply<T>> {
    const headers: Record<string, string> = { ...opts.headers };
    if (this.credentials.token) headers.authorization = `Bearer ${this.credentials.token}`;
    if (this.credentials.apiKey) headers['x-api-key'] = this.credentials.apiKey;
    let body: string | Uint8Array | undefined = opts.raw;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await fetch(this.baseUrl + path, { method, headers, body });
    const text = await res.text();
    let parsed: unknown = text;
    if ((res.headers.get('content-type') ?? '').includes('json') && text) parsed = JSON.parse(text);
    return { status: res.status, headers: res.headers, body: parsed as T, text };
  }

  get<T = any>(path: string, headers?: Record<string, string>) {
    return this.request<T>('GET', path, { headers });
  }
  post<T = any>(path: string, body?: unknown, headers?: Record<string, string>) {
    return this.request<T>('POST', path, { body, headers });
  }
  delete<T = any>(path: string) {
    return this.request<T>('DELETE', path);
  }
}
