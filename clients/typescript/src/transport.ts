import { AdiuvaError } from "./errors.js";
import { IDEMPOTENT_POSTS } from "./idempotent.js";
import { type TokenStore, type Tokens, tokensFrom } from "./tokens.js";

/** How the client retries answers that say "later" (429, 503) and requests that got none. */
export interface RetryOptions {
  /** Retries of one logical call at most (default 3). */
  attempts?: number;
  /**
   * Total time one call may spend waiting between its attempts, in ms (default 30 000). A
   * `Retry-After` that would go past it is not waited for: the call fails with that answer.
   */
  maxWaitMs?: number;
  /** The wait before the first retry when the server names none, doubled each time (default 500). */
  baseDelayMs?: number;
}

/** Either state the client is in; `signed-out` once a refresh has been refused. */
export type AuthState = "signed-in" | "signed-out";

export interface TransportOptions {
  baseUrl: string;
  tokens: TokenStore;
  fetch: (input: Request) => Promise<Response>;
  retry: Required<RetryOptions>;
}

/** Routes served without a caller: no bearer token goes to them. */
const PUBLIC_ROUTES = [
  "/api/v1/health",
  "/api/v1/health/ready",
  "/api/v1/auth/register",
  "/api/v1/auth/login",
  "/api/v1/auth/refresh",
  "/api/v1/auth/oidc/providers",
  "/api/v1/auth/oidc/start",
  "/api/v1/auth/oidc/callback",
  "/api/v1/openapi.json",
];

/** Answers that sign a device in: their tokens are kept. */
const TOKEN_ROUTES = [
  "/api/v1/auth/register",
  "/api/v1/auth/login",
  "/api/v1/auth/refresh",
  "/api/v1/auth/password",
  "/api/v1/auth/oidc/callback",
];


/** Methods HTTP defines as safe to repeat. */
const REPEATABLE_METHODS = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);

/** The API path of a URL (`/api/v1/...`), whatever prefix the base URL has. */
export function apiPath(url: URL): string {
  const at = url.pathname.indexOf("/api/v1/");
  return at >= 0 ? url.pathname.slice(at) : url.pathname;
}

/** A new idempotency key: one per logical call, reused by all its attempts. */
export function idempotencyKey(): string {
  return globalThis.crypto.randomUUID();
}

function sleep(ms: number, signal?: AbortSignal | null): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** `Retry-After` in ms: delay-seconds or an HTTP date; null when absent or unreadable. */
export function retryAfterMs(response: Response): number | null {
  const value = response.headers.get("retry-after");
  if (value === null) return null;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, date - Date.now());
}

async function errorCode(response: Response): Promise<string | null> {
  try {
    const body = (await response.clone().json()) as { code?: unknown };
    return typeof body?.code === "string" ? body.code : null;
  } catch {
    return null;
  }
}

/**
 * What every request of the client goes through (the `fetch` openapi-fetch is given): the
 * bearer token; on a 401 one refresh shared by every request waiting at that moment, and one
 * retry each; 429 and 503 retried after `Retry-After` (bounded); an `Idempotency-Key` per
 * logical call, the same on each of its attempts, so that a creating POST that got no answer
 * is retried and processed once.
 */
export class Transport {
  private readonly options: TransportOptions;
  private refreshing: Promise<boolean> | null = null;
  private listeners = new Set<() => void>();
  private signedOutOnce = false;
  state: AuthState;

  constructor(options: TransportOptions, state: AuthState) {
    this.options = options;
    this.state = state;
  }

  get tokens(): TokenStore {
    return this.options.tokens;
  }

  /** Calls `listener` each time the client becomes signed out; returns its removal. */
  onSignedOut(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async signedIn(tokens: Tokens): Promise<void> {
    await this.options.tokens.set(tokens);
    this.state = "signed-in";
  }

  /** The store held tokens when the client was made; nothing signed it out since. */
  keptSignIn(): void {
    if (!this.signedOutOnce) this.state = "signed-in";
  }

  async signOut(): Promise<void> {
    this.signedOutOnce = true;
    await this.options.tokens.set(null);
    const was = this.state;
    this.state = "signed-out";
    if (was !== "signed-out") for (const listener of this.listeners) listener();
  }

  /** The `fetch` openapi-fetch calls: one logical call, however many attempts it takes. */
  readonly fetch = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    const path = apiPath(url);
    const method = request.method.toUpperCase();
    const authenticated = !PUBLIC_ROUTES.includes(path);
    // The body is read once, so that each attempt sends the same bytes.
    const body =
      method === "GET" || method === "HEAD" ? undefined : await request.arrayBuffer();
    const key =
      request.headers.get("idempotency-key") ?? (method === "POST" ? idempotencyKey() : null);
    const repeatable =
      REPEATABLE_METHODS.has(method) ||
      (method === "POST" && IDEMPOTENT_POSTS.some((route) => route.test(path)));
    const { attempts, maxWaitMs, baseDelayMs } = this.options.retry;
    let retries = 0;
    let waited = 0;
    let refreshed = false;

    for (;;) {
      const headers = new Headers(request.headers);
      if (key !== null) headers.set("idempotency-key", key);
      const tokens = authenticated ? await this.options.tokens.get() : null;
      if (tokens) headers.set("authorization", `Bearer ${tokens.accessToken}`);
      const attempt = new Request(url, {
        method,
        headers,
        body: body && body.byteLength > 0 ? body : undefined,
        redirect: request.redirect,
        signal: request.signal,
      });

      let response: Response;
      try {
        response = await this.options.fetch(attempt);
      } catch (err) {
        if (request.signal?.aborted || !repeatable || retries >= attempts) {
          throw AdiuvaError.network(err);
        }
        const delay = baseDelayMs * 2 ** retries;
        if (waited + delay > maxWaitMs) throw AdiuvaError.network(err);
        retries += 1;
        waited += delay;
        await sleep(delay, request.signal);
        continue;
      }

      if (response.status === 401 && authenticated && !refreshed && tokens) {
        const code = await errorCode(response);
        if (code === "invalid_token" || code === "missing_token") {
          refreshed = true;
          if (await this.refreshAfter(tokens.accessToken)) {
            await response.body?.cancel();
            continue;
          }
        }
        return response;
      }

      const later =
        response.status === 429 ||
        response.status === 503 ||
        (response.status === 409 && (await errorCode(response)) === "idempotency_key_in_use");
      if (later && retries < attempts) {
        const delay = retryAfterMs(response) ?? baseDelayMs * 2 ** retries;
        if (waited + delay <= maxWaitMs) {
          await response.body?.cancel();
          retries += 1;
          waited += delay;
          await sleep(delay, request.signal);
          continue;
        }
      }

      if (response.ok && method === "POST" && TOKEN_ROUTES.includes(path)) {
        const signedIn = tokensFrom(await response.clone().json().catch(() => null));
        if (signedIn) await this.signedIn(signedIn);
      }
      if (path === "/api/v1/auth/logout" && (response.ok || response.status === 401)) {
        await this.signOut();
      }
      return response;
    }
  };

  /**
   * One refresh for every request that got a 401 with `staleAccess`: the first starts it, the
   * others wait for it, and one that comes after it finished finds the new token stored.
   * Resolves whether a fresh access token is there to retry with. A refused refresh (the
   * session ended, the token was used) signs the client out.
   */
  private refreshAfter(staleAccess: string): Promise<boolean> {
    if (this.refreshing) return this.refreshing;
    this.refreshing = (async () => {
      const current = await this.options.tokens.get();
      if (!current) return false;
      if (current.accessToken !== staleAccess) return true;
      let response: Response;
      try {
        response = await this.options.fetch(
          new Request(new URL("api/v1/auth/refresh", this.base()), {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ refresh_token: current.refreshToken }),
          }),
        );
      } catch {
        return false;
      }
      if (response.ok) {
        const tokens = tokensFrom(await response.json().catch(() => null));
        if (tokens) {
          await this.signedIn(tokens);
          return true;
        }
        return false;
      }
      await response.body?.cancel();
      if (response.status === 401 || response.status === 403) await this.signOut();
      return false;
    })().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  /** The base URL as given, with one trailing slash (paths are appended to it). */
  base(): string {
    return this.options.baseUrl.endsWith("/") ? this.options.baseUrl : `${this.options.baseUrl}/`;
  }
}
