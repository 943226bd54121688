/** The pair the API signs a device in with. */
export interface Tokens {
  /** A JWT sent as `Authorization: Bearer ...`; short-lived (30 minutes by default). */
  accessToken: string;
  /** Single use: exchanged at `/auth/refresh` for a new pair (the client does it). */
  refreshToken: string;
  /** When the access token expires, ms since the epoch, when known. */
  expiresAt?: number;
}

/**
 * Where the client keeps the tokens. The app passes its own (the OS keychain, safeStorage in
 * Electron) to stay signed in across restarts; the default keeps them in memory. The client
 * calls `set` with the rotated pair after every refresh, and with `null` when signed out.
 */
export interface TokenStore {
  get(): Tokens | null | Promise<Tokens | null>;
  set(tokens: Tokens | null): void | Promise<void>;
}

/** A store in memory: what the client uses unless given another. */
export function memoryTokenStore(initial: Tokens | null = null): TokenStore {
  let tokens = initial;
  return {
    get: () => tokens,
    set: (next) => {
      tokens = next;
    },
  };
}

/** The API's token answer (`AuthTokens`) as stored. */
export function tokensFrom(body: unknown): Tokens | null {
  if (body === null || typeof body !== "object") return null;
  const record = body as Record<string, unknown>;
  if (typeof record.access_token !== "string" || typeof record.refresh_token !== "string") {
    return null;
  }
  const tokens: Tokens = {
    accessToken: record.access_token,
    refreshToken: record.refresh_token,
  };
  if (typeof record.expires_at === "number") tokens.expiresAt = record.expires_at;
  return tokens;
}
