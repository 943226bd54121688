/** What the API answers on an error: `{detail, code, request_id}` (plus, for some, more). */
export interface ErrorBody {
  detail?: string;
  code?: string;
  request_id?: string;
  reasons?: { name: string; detail: string }[];
  resets_at?: number;
  [field: string]: unknown;
}

/**
 * The one error the client throws: an answer that was not a success (`status` is its HTTP
 * status), or no answer at all (`status` 0, `code` `network_error`). `code` is the API's
 * machine-readable code (`invalid_credentials`, `quota_exceeded`, ...), `detail` its message,
 * `requestId` the `x-request-id` to quote in a bug report.
 */
export class AdiuvaError extends Error {
  readonly status: number;
  readonly code: string;
  readonly detail: string;
  readonly requestId: string | null;
  /** The whole error body, for the fields some errors add (`reasons`, `resets_at`). */
  readonly body: ErrorBody | null;

  constructor(
    status: number,
    code: string,
    detail: string,
    requestId: string | null = null,
    body: ErrorBody | null = null,
    options?: { cause?: unknown },
  ) {
    super(`${status} ${code}: ${detail}`, options);
    this.name = "AdiuvaError";
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.requestId = requestId;
    this.body = body;
  }

  /** The error of a failed answer; reads its body. */
  static async fromResponse(response: Response): Promise<AdiuvaError> {
    let body: ErrorBody | null = null;
    try {
      const text = await response.text();
      body = text ? (JSON.parse(text) as ErrorBody) : null;
    } catch {
      body = null;
    }
    return AdiuvaError.fromBody(response.status, body, response.headers);
  }

  /** The error of an answer whose body was read already (openapi-fetch's `error`). */
  static fromBody(status: number, body: unknown, headers?: Headers): AdiuvaError {
    const parsed =
      body !== null && typeof body === "object" ? (body as ErrorBody) : null;
    const code = typeof parsed?.code === "string" ? parsed.code : `http_${status}`;
    const detail =
      typeof parsed?.detail === "string"
        ? parsed.detail
        : typeof body === "string" && body
          ? body
          : `the server answered ${status}`;
    const requestId =
      (typeof parsed?.request_id === "string" ? parsed.request_id : null) ??
      headers?.get("x-request-id") ??
      null;
    const ErrorClass = status === 410 && code === "cursor_expired" ? StartOverError : AdiuvaError;
    return new ErrorClass(status, code, detail, requestId, parsed);
  }

  /** The error of a request that got no answer. */
  static network(cause: unknown): AdiuvaError {
    const message = cause instanceof Error ? cause.message : String(cause);
    return new AdiuvaError(0, "network_error", message, null, null, { cause });
  }
}

/**
 * The sync feed no longer knows the cursor (410 `cursor_expired`: deletions older than it were
 * forgotten): sync again from the start (`since` omitted) and reconcile.
 */
export class StartOverError extends AdiuvaError {
  constructor(
    status: number,
    code: string,
    detail: string,
    requestId: string | null = null,
    body: ErrorBody | null = null,
  ) {
    super(status, code, detail, requestId, body);
    this.name = "StartOverError";
  }
}
