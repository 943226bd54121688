import createClient, { type Client } from "openapi-fetch";

import { fromBase64, plain, sha256Hex, toBase64 } from "./bytes.js";
import { type ChatRequest, type ChatResult, type ChatSendOptions, sendChat, type WebSocketConstructor } from "./chat.js";
import * as crypto from "./crypto.js";
import { AdiuvaError } from "./errors.js";
import type { components, paths } from "./schema.js";
import { memoryTokenStore, type TokenStore } from "./tokens.js";
import { type AuthState, type RetryOptions, Transport, idempotencyKey } from "./transport.js";

type Schemas = components["schemas"];
export type RecordMeta = Schemas["RecordMeta"];
export type Change = Schemas["Change"];
export type BackupMeta = Schemas["BackupMeta"];
/** What `records.create` answers: `{id, version, created_at}`, and the rest of the metadata after an upload. */
export type RecordCreated = Schemas["Created"] & Partial<RecordMeta>;
/** What `records.update` answers. */
export type RecordUpdated = Pick<Schemas["Updated"], "version" | "checksum" | "updated_at">;

export interface AdiuvaClientOptions {
  /** Where the API is, e.g. `http://127.0.0.1:8000` (its paths start with `/api/v1/`). */
  baseUrl: string;
  /** Where tokens are kept (memory by default); the app passes its own to persist them. */
  tokens?: TokenStore;
  /** Retries of 429, 503 and unanswered requests: how many and how long in all. */
  retry?: RetryOptions;
  /** Called when a refresh is refused and the client is signed out. */
  onSignedOut?: () => void;
  /**
   * Largest record or backup sent inside one request (default 3 MiB: 4 MiB once base64 in
   * JSON, the server's default `MAX_BODY_BYTES`). Larger ones take the upload flow, and so
   * does one the server refuses as too large (413).
   */
  maxInlineBytes?: number;
  /** The fetch to use (default `globalThis.fetch`; Electron's `net.fetch`, a test's spy). */
  fetch?: (input: Request) => Promise<Response>;
  /** The WebSocket class for `chat.send` (default `globalThis.WebSocket`). */
  WebSocket?: WebSocketConstructor;
  /** The chat stream's URL (default `ws(s)://<baseUrl>/api/v1/chat/stream`; deployed, the WebSocket API's). */
  chatUrl?: string;
}

/** Options of one creating call: a key of the app's own makes a retry after a restart safe too. */
export interface CreateOptions {
  idempotencyKey?: string;
}

/** An async iterator over the sync feed; `cursor` is what to store for the next sync once it ends. */
export interface ChangeFeed extends AsyncIterable<Change> {
  /** The cursor after the last change read (the `since` given, until a page has been read). */
  readonly cursor: string | undefined;
}

type Result<T> = Promise<{ data?: T; error?: unknown; response: Response }>;

/** The data of a success, or the answer's error thrown as an `AdiuvaError`. */
async function unwrap<T>(result: Result<T>): Promise<T> {
  const { data, error, response } = await result;
  if (!response.ok || error !== undefined) {
    throw AdiuvaError.fromBody(response.status, error, response.headers);
  }
  return data as T;
}

function ifMatch(version: number | undefined): Record<string, string> {
  return version === undefined ? {} : { "If-Match": `"${version}"` };
}

function keyHeader(options?: CreateOptions): Record<string, string> {
  return { "Idempotency-Key": options?.idempotencyKey ?? idempotencyKey() };
}

/**
 * A client of the Adiuva API. Every call goes through one transport: the bearer token, one
 * shared refresh on 401, retries of 429 and 503 after `Retry-After`, and an `Idempotency-Key`
 * per logical call. The wrappers throw `AdiuvaError`; `raw` is the typed openapi-fetch client
 * for any other route (its errors are returned, not thrown).
 */
export function createAdiuvaClient(options: AdiuvaClientOptions) {
  const fetchImpl = options.fetch ?? ((request: Request) => globalThis.fetch(request));
  const transport = new Transport(
    {
      baseUrl: options.baseUrl,
      tokens: options.tokens ?? memoryTokenStore(),
      fetch: fetchImpl,
      retry: {
        attempts: options.retry?.attempts ?? 3,
        maxWaitMs: options.retry?.maxWaitMs ?? 30_000,
        baseDelayMs: options.retry?.baseDelayMs ?? 500,
      },
    },
    "signed-out",
  );
  if (options.onSignedOut) transport.onSignedOut(options.onSignedOut);
  // Tokens the app's store kept from an earlier run sign the client in.
  void Promise.resolve(transport.tokens.get()).then((kept) => {
    if (kept) transport.keptSignIn();
  });
  const raw: Client<paths> = createClient<paths>({
    baseUrl: options.baseUrl.replace(/\/+$/, ""),
    fetch: transport.fetch,
  });
  const maxInlineBytes = options.maxInlineBytes ?? 3 * 1024 * 1024;

  /** PUTs the bytes where an upload ticket says (a presigned S3 URL or the local stand-in). */
  async function putBlob(ticket: Schemas["UploadTicket"], bytes: Uint8Array): Promise<void> {
    const url = new URL(ticket.url, transport.base());
    // fetch sets Content-Length from the body itself (browsers refuse it from the caller).
    const headers = Object.fromEntries(
      Object.entries(ticket.headers).filter(([name]) => name.toLowerCase() !== "content-length"),
    );
    let response: Response;
    try {
      response = await fetchImpl(
        new Request(url, { method: ticket.method || "PUT", headers, body: plain(bytes) }),
      );
    } catch (err) {
      throw AdiuvaError.network(err);
    }
    if (!response.ok) throw await AdiuvaError.fromResponse(response);
    await response.body?.cancel();
  }

  /** The upload flow: announce, PUT the bytes, commit. */
  async function upload(
    announce: Schemas["UploadRequest"],
    bytes: Uint8Array,
    options?: CreateOptions,
  ): Promise<Schemas["Committed"]> {
    const ticket = await unwrap(
      raw.POST("/api/v1/storage/uploads", { body: announce, headers: keyHeader(options) }),
    );
    await putBlob(ticket, bytes);
    return unwrap(
      raw.POST("/api/v1/storage/uploads/{upload_id}/commit", {
        params: { path: { upload_id: ticket.upload_id } },
      }),
    );
  }

  /** Bytes of a blob download (the transport follows a large blob's 307). */
  async function bytesOf(result: Result<unknown>): Promise<Uint8Array> {
    const { data, error, response } = await result;
    if (!response.ok || error !== undefined) {
      throw AdiuvaError.fromBody(response.status, error, response.headers);
    }
    const bytes = new Uint8Array(data as ArrayBuffer);
    const expected = response.headers.get("x-checksum");
    if (expected && (await sha256Hex(bytes)) !== expected) {
      throw new AdiuvaError(response.status, "checksum_mismatch", "the downloaded bytes do not match X-Checksum");
    }
    return bytes;
  }

  /** Every item of a cursor-paged list (`X-Next-Cursor`), page after page. */
  async function* pages<T>(page: (cursor: string | undefined) => Result<T[]>): AsyncGenerator<T> {
    let cursor: string | undefined;
    for (;;) {
      const { data, error, response } = await page(cursor);
      if (!response.ok || error !== undefined) {
        throw AdiuvaError.fromBody(response.status, error, response.headers);
      }
      yield* data ?? [];
      const next = response.headers.get("x-next-cursor");
      if (!next) return;
      cursor = next;
    }
  }

  const auth = {
    /** Creates an account and signs this client in with it. */
    register: (credentials: Schemas["Credentials"]) =>
      unwrap(raw.POST("/api/v1/auth/register", { body: credentials })),
    /** Signs this client in. */
    login: (credentials: Schemas["Credentials"]) =>
      unwrap(raw.POST("/api/v1/auth/login", { body: credentials })),
    /** Ends this device's session and forgets its tokens. */
    logout: async () => {
      try {
        return await unwrap(raw.POST("/api/v1/auth/logout"));
      } finally {
        await transport.signOut();
      }
    },
    /** The signed-in profile: tier, its source, teams, identities. */
    me: () => unwrap(raw.GET("/api/v1/auth/me")),
    /** `signed-in` after a sign-in, `signed-out` before and once a refresh was refused. */
    get state(): AuthState {
      return transport.state;
    },
    /** Calls `listener` each time the client becomes signed out; returns its removal. */
    onSignedOut: (listener: () => void) => transport.onSignedOut(listener),
    /** Uses tokens the app kept from an earlier run. */
    resume: (tokens: Parameters<Transport["signedIn"]>[0]) => transport.signedIn(tokens),
  };

  const records = {
    /** Stores encrypted bytes as a new record of `table`; large ones through the upload flow. */
    async create(
      input: { table: string; data: Uint8Array },
      options?: CreateOptions,
    ): Promise<RecordCreated> {
      const checksum = await sha256Hex(input.data);
      if (input.data.byteLength <= maxInlineBytes) {
        const { data, error, response } = await raw.POST("/api/v1/storage/records", {
          body: { table: input.table, blob: toBase64(input.data), checksum },
          headers: keyHeader(options),
        });
        if (response.ok && data) return data;
        if (response.status !== 413) throw AdiuvaError.fromBody(response.status, error, response.headers);
      }
      const committed = await upload(
        { purpose: "record", table: input.table, size_bytes: input.data.byteLength, checksum },
        input.data,
        options,
      );
      if (committed.purpose !== "record") throw new AdiuvaError(500, "unexpected_commit", committed.purpose);
      return committed.record;
    },
    /** The record's bytes (a large one is downloaded from the URL the server redirects to). */
    get: (id: string) =>
      bytesOf(
        raw.GET("/api/v1/storage/records/{id}", { params: { path: { id } }, parseAs: "arrayBuffer" }),
      ),
    /** Replaces the record's bytes; with `ifMatch`, only if it is still at that version (else 412). */
    async update(id: string, data: Uint8Array, options: { ifMatch?: number } = {}): Promise<RecordUpdated> {
      const checksum = await sha256Hex(data);
      if (data.byteLength <= maxInlineBytes) {
        const { data: updated, error, response } = await raw.PUT("/api/v1/storage/records/{id}", {
          params: { path: { id }, header: ifMatch(options.ifMatch) },
          body: { blob: toBase64(data), checksum },
        });
        if (response.ok && updated) return updated;
        if (response.status !== 413) throw AdiuvaError.fromBody(response.status, error, response.headers);
      }
      const committed = await upload(
        {
          purpose: "record",
          record_id: id,
          if_match: options.ifMatch ?? null,
          size_bytes: data.byteLength,
          checksum,
        },
        data,
      );
      if (committed.purpose !== "record") throw new AdiuvaError(500, "unexpected_commit", committed.purpose);
      return committed.record;
    },
    /** Deletes the record (devices see a tombstone in the sync feed). */
    delete: (id: string) =>
      unwrap(raw.DELETE("/api/v1/storage/records/{id}", { params: { path: { id } } })),
    /** Every record's metadata (of `table`, if given), newest first, page after page. */
    list: (query: { table?: string; limit?: number } = {}): AsyncIterable<RecordMeta> =>
      pages((cursor) =>
        raw.GET("/api/v1/storage/records", { params: { query: { ...query, cursor } } }),
      ),
  };

  const sync = {
    /**
     * Every change after `since` (omitted: every live record), page after page until caught
     * up. Once the iteration ends, `cursor` is the cursor to store for the next sync. A cursor
     * the server no longer knows throws `StartOverError` (410): sync again without `since`.
     */
    changes(query: { since?: string; limit?: number } = {}): ChangeFeed {
      let cursor = query.since;
      async function* iterate(): AsyncGenerator<Change> {
        for (;;) {
          const page = await unwrap(
            raw.GET("/api/v1/storage/changes", {
              params: { query: { since: cursor, limit: query.limit } },
            }),
          );
          yield* page.changes;
          cursor = page.next_cursor;
          if (!page.has_more) return;
        }
      }
      return {
        get cursor() {
          return cursor;
        },
        [Symbol.asyncIterator]: iterate,
      };
    },
  };

  const backups = {
    /** Stores a backup (large ones through the upload flow). */
    async put(
      data: Uint8Array,
      meta: { version: number; timestamp?: number; chunkCount?: number },
      options?: CreateOptions,
    ): Promise<BackupMeta> {
      const checksum = await sha256Hex(data);
      const timestamp = meta.timestamp ?? Date.now();
      const chunkCount = meta.chunkCount ?? 1;
      if (data.byteLength <= maxInlineBytes) {
        const { data: stored, error, response } = await raw.PUT("/api/v1/backup", {
          params: {
            header: {
              "X-Backup-Version": meta.version,
              "X-Backup-Timestamp": timestamp,
              "X-Backup-Checksum": checksum,
              "X-Backup-Chunk-Count": chunkCount,
            },
          },
          body: plain(data) as unknown as string,
          bodySerializer: (body: unknown) => body as BodyInit,
          headers: { "content-type": "application/octet-stream" },
        });
        if (response.ok && stored) return stored;
        if (response.status !== 413) throw AdiuvaError.fromBody(response.status, error, response.headers);
      }
      const committed = await upload(
        {
          purpose: "backup",
          size_bytes: data.byteLength,
          checksum,
          timestamp,
          version: meta.version,
          chunk_count: chunkCount,
        },
        data,
        options,
      );
      if (committed.purpose !== "backup") throw new AdiuvaError(500, "unexpected_commit", committed.purpose);
      return committed.backup;
    },
    /** The latest backup's bytes, or null when there is none. */
    async latest(): Promise<Uint8Array | null> {
      try {
        return await bytesOf(raw.GET("/api/v1/backup", { parseAs: "arrayBuffer" }));
      } catch (err) {
        if (err instanceof AdiuvaError && err.status === 404) return null;
        throw err;
      }
    },
    /** Every backup's metadata, newest first, page after page. */
    history: (query: { limit?: number } = {}): AsyncIterable<BackupMeta> =>
      pages((cursor) => raw.GET("/api/v1/backup/history", { params: { query: { ...query, cursor } } })),
    delete: (backupId: string) =>
      unwrap(raw.DELETE("/api/v1/backup/{backup_id}", { params: { path: { backup_id: backupId } } })),
  };

  const vectors = {
    /** Stores points: each an encrypted blob, with the app's own vector or none. */
    async upsert(points: { id: string; data: Uint8Array; vector?: number[] | null }[]) {
      const vectors = await Promise.all(
        points.map(async (point) => ({
          id: point.id,
          blob: toBase64(point.data),
          checksum: await sha256Hex(point.data),
          vector: point.vector ?? null,
        })),
      );
      return unwrap(raw.POST("/api/v1/storage/vectors/upsert", { body: { vectors } }));
    },
    /** The nearest points, their blobs as bytes. */
    async search(query: { data: Uint8Array; vector?: number[] | null; topK?: number }) {
      const found = await unwrap(
        raw.POST("/api/v1/storage/vectors/search", {
          body: { query_blob: toBase64(query.data), vector: query.vector ?? null, top_k: query.topK ?? 10 },
        }),
      );
      return found.results.map((result) => ({ id: result.id, score: result.score, data: fromBase64(result.blob) }));
    },
    delete: (ids: string[]) => unwrap(raw.DELETE("/api/v1/storage/vectors", { body: { ids } })),
  };

  const billing = {
    checkout: (body: Schemas["CheckoutRequest"]) => unwrap(raw.POST("/api/v1/billing/checkout", { body })),
    subscription: () => unwrap(raw.GET("/api/v1/billing/subscription")),
    cancel: (options: { atPeriodEnd?: boolean } = {}) =>
      unwrap(
        raw.DELETE("/api/v1/billing/subscription", {
          params: { query: { at_period_end: options.atPeriodEnd } },
        }),
      ),
    portal: () => unwrap(raw.POST("/api/v1/billing/portal")),
    entitlements: () => unwrap(raw.GET("/api/v1/billing/entitlements")),
  };

  const plugins = {
    list: (query: NonNullable<paths["/api/v1/plugins"]["get"]["parameters"]["query"]> = {}) =>
      unwrap(raw.GET("/api/v1/plugins", { params: { query } })),
    get: (id: string) => unwrap(raw.GET("/api/v1/plugins/{id}", { params: { path: { id } } })),
    install: (id: string) => unwrap(raw.POST("/api/v1/plugins/{id}/install", { params: { path: { id } } })),
    uninstall: (id: string) => unwrap(raw.DELETE("/api/v1/plugins/{id}/install", { params: { path: { id } } })),
    rate: (id: string, stars: number) =>
      unwrap(raw.PUT("/api/v1/plugins/{id}/rating", { params: { path: { id } }, body: { stars } })),
  };

  const teams = {
    list: () => unwrap(raw.GET("/api/v1/teams")),
    create: (name: string) => unwrap(raw.POST("/api/v1/teams", { body: { name } })),
    get: (id: string) => unwrap(raw.GET("/api/v1/teams/{id}", { params: { path: { id } } })),
    delete: (id: string) => unwrap(raw.DELETE("/api/v1/teams/{id}", { params: { path: { id } } })),
    members: (id: string) => unwrap(raw.GET("/api/v1/teams/{id}/members", { params: { path: { id } } })),
    invite: (id: string, body: Schemas["NewInvitation"]) =>
      unwrap(raw.POST("/api/v1/teams/{id}/invitations", { params: { path: { id } }, body })),
    accept: (token: string) => unwrap(raw.POST("/api/v1/teams/invitations/accept", { body: { token } })),
  };

  const chatUrl =
    options.chatUrl ??
    new URL("api/v1/chat/stream", transport.base()).toString().replace(/^http/, "ws");
  const chat = {
    /**
     * Sends a chat over the WebSocket and streams the answer into `onDelta`; resolves with the
     * final frame. Resumable by default: a dropped connection is resumed from the last frame seen.
     */
    send: (request: ChatRequest, sendOptions?: ChatSendOptions): Promise<ChatResult> =>
      sendChat(
        {
          url: chatUrl,
          WebSocket: options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket,
          accessToken: async () => (await transport.tokens.get())?.accessToken ?? null,
          // A refused upgrade: an authenticated call refreshes the tokens if they expired.
          refresh: async () => (await raw.GET("/api/v1/auth/me")).response.ok,
        },
        request,
        sendOptions,
      ),
    /** The same chat over HTTP, answered whole. */
    ask: (request: ChatRequest) => unwrap(raw.POST("/api/v1/chat", { body: request })),
    usage: () => unwrap(raw.GET("/api/v1/chat/usage")),
    agents: () => unwrap(raw.GET("/api/v1/chat/agents")),
  };

  return { raw, auth, records, sync, backups, vectors, billing, plugins, teams, chat, crypto };
}

export type AdiuvaClient = ReturnType<typeof createAdiuvaClient>;
