/** One field-level complaint inside a problem: where (a JSON path) and what is wrong. */
export interface FieldError {
  path: string;
  message: string;
}

/** An RFC 9457 problem document, as every error of the API is answered. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  errors?: FieldError[];
  instance?: string;
  requestId?: string;
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export const PROBLEM_BASE = 'https://orderstream.dev/problems/';

/**
 * The one error type services throw. The HTTP layer maps it to problem+json; sockets map it to
 * their ack envelope. `type` is a short slug that names the kind of problem for programs.
 */
export class ProblemError extends Error {
  readonly status: number;
  readonly slug: string;
  readonly errors?: FieldError[];
  readonly headers?: Record<string, string>;

  constructor(
    status: number,
    slug: string,
    detail: string,
    extra: { errors?: FieldError[]; headers?: Record<string, string> } = {},
  ) {
    super(detail);
    this.status = status;
    this.slug = slug;
    this.errors = extra.errors;
    this.headers = extra.headers;
  }

  /** Rebuilds the error from a problem document (a batch item's error, raised for a single post). */
  static from(p: Problem): ProblemError {
    return new ProblemError(p.status, p.type.slice(PROBLEM_BASE.length), p.detail ?? p.title, { errors: p.errors });
  }

  toProblem(): Problem {
    return problem(this.status, this.slug, this.message, this.errors);
  }
}

export function problem(status: number, slug: string, detail?: string, errors?: FieldError[]): Problem {
  return {
    type: PROBLEM_BASE + slug,
    title: TITLES[status] ?? 'Error',
    status,
    ...(detail ? { detail } : {}),
    ...(errors && errors.length ? { errors } : {}),
  };
}

export const badRequest = (detail: string, errors?: FieldError[]) =>
  new ProblemError(400, 'invalid-request', detail, { errors });
export const unauthorized = (detail: string) => new ProblemError(401, 'unauthorized', detail);
export const forbidden = (detail: string) => new ProblemError(403, 'forbidden', detail);
export const notFound = (what: string) => new ProblemError(404, 'not-found', `${what} not found`);
export const conflict = (slug: string, detail: string) => new ProblemError(409, slug, detail);
export const idempotencyMismatch = () =>
  new ProblemError(
    422,
    'idempotency-key-reused',
    'this Idempotency-Key was already used with a different request body',
  );

/** Turns a zod-style issue path into the JSON path clients see, e.g. `route[2].after[0]`. */
export function jsonPath(path: ReadonlyArray<PropertyKey>, prefix = ''): string {
  let out = prefix;
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out || '(root)';
}

/** Field errors from zod issues; an unknown key is named at its own path, not its parent's. */
export function fieldErrors(
  issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; code?: string; message: string; keys?: string[] }>,
  prefix: string,
): FieldError[] {
  return issues.flatMap((i) =>
    i.code === 'unrecognized_keys' && i.keys?.length
      ? i.keys.map((k) => ({ path: jsonPath([...i.path, k], prefix), message: 'unknown field' }))
      : [{ path: jsonPath(i.path, prefix), message: i.message }],
  );
}

/** A 400 naming every field of a failed parse. */
export function validationProblem(issues: Parameters<typeof fieldErrors>[0], prefix: string): ProblemError {
  const errors = fieldErrors(issues, prefix);
  return new ProblemError(400, 'validation-failed', `invalid ${errors.map((e) => e.path).join(', ')}`, { errors });
}
