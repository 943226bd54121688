import { AdiuvaError } from "./errors.js";
import type { components } from "./schema.js";

type Schemas = components["schemas"];

/** What a chat is sent with, plus `resumable` (set by `chat.send`'s option). */
export type ChatRequest = Schemas["ChatRequest"];

/** The end of a chat: the answer and the actions for the app to apply (or, in plan mode, the plan). */
export interface ChatResult {
  response: string;
  actions: Schemas["PlanAction"][];
  plan?: unknown;
  /** The stream's id (resumable streams only). */
  streamId?: string;
  /** True when the stream was cancelled before the model finished. */
  cancelled?: boolean;
}

/** The part of the WebSocket API the client uses (the browser's, Electron's, Node 22's or `ws`'s). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: "open" | "close" | "error", listener: () => void): void;
  addEventListener(type: "message", listener: (event: { data: unknown }) => void): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface ChatSendOptions {
  /** Called with each piece of text as the model writes it, in order, once each. */
  onDelta?: (text: string) => void;
  /**
   * Ask for a resumable stream: if the connection drops, the client connects again and asks
   * for the frames after the last one it saw, so the answer arrives whole (default true). A
   * server without resumable streams answers the plain protocol, which cannot resume.
   */
  resumable?: boolean;
  /** How many times one chat may reconnect to resume (default 5). */
  maxResumes?: number;
  /** Aborting cancels the generation (resumable streams) or closes the socket. */
  signal?: AbortSignal;
}

/** What the client needs from around it to open sockets. */
export interface ChatTransport {
  url: string;
  WebSocket: WebSocketConstructor | undefined;
  accessToken(): Promise<string | null>;
  /** Refreshes the tokens after `stale` was refused; whether there is a new one. */
  refresh(stale: string): Promise<boolean>;
}

/** One decoded frame of either protocol. */
type Frame =
  | { kind: "start"; streamId: string; seq: number }
  | { kind: "delta"; seq: number | null; text: string }
  | { kind: "done"; seq: number | null; body: Record<string, unknown> }
  | { kind: "error"; code: string; detail: string };

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** Joins API Gateway's `{"final_part": i, "final_parts": n, "data"}` pieces of a large last frame. */
class FinalParts {
  private parts: string[] = [];

  /** The whole frame once the last part came; `undefined` while parts are missing. */
  add(frame: Record<string, unknown>): string | undefined {
    const index = Number(frame.final_part);
    const count = Number(frame.final_parts);
    this.parts[index] = String(frame.data ?? "");
    const have = this.parts.filter((part) => part !== undefined).length;
    return have === count ? this.parts.join("") : undefined;
  }
}

function decode(text: string, parts: FinalParts): Frame | null {
  if (!text.startsWith("{")) return { kind: "delta", seq: null, text };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { kind: "delta", seq: null, text };
  }
  if (!isObject(parsed)) return { kind: "delta", seq: null, text };
  if ("final_part" in parsed && "final_parts" in parsed) {
    const whole = parts.add(parsed);
    return whole === undefined ? null : decode(whole, parts);
  }
  switch (parsed.type) {
    case "start":
      return { kind: "start", streamId: String(parsed.stream_id), seq: Number(parsed.seq ?? 0) };
    case "delta":
      return { kind: "delta", seq: Number(parsed.seq), text: String(parsed.text ?? "") };
    case "done":
      return { kind: "done", seq: Number(parsed.seq), body: parsed };
    case "error":
      return {
        kind: "error",
        code: String(parsed.code ?? "stream_error"),
        detail: String(parsed.detail ?? parsed.code ?? "the stream failed"),
      };
  }
  if (parsed.done === true) return { kind: "done", seq: null, body: parsed };
  return { kind: "delta", seq: null, text };
}

function finalError(body: Record<string, unknown>): AdiuvaError | null {
  const error = body.error;
  if (!isObject(error)) return null;
  const status = typeof error.status === "number" ? error.status : 500;
  return AdiuvaError.fromBody(status, error);
}

function wait(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * `chat.send`: the ChatRequest as the first frame of a WebSocket, text as it streams, the
 * final frame as the result. Resumable streams (`{"type": "start" | "delta" | "done", seq}`)
 * survive a dropped connection: the client connects again and sends `{"action": "resume",
 * "stream_id", "after": <last seq seen>}`, and skips any frame it saw already.
 */
export async function sendChat(
  transport: ChatTransport,
  request: ChatRequest,
  options: ChatSendOptions = {},
): Promise<ChatResult> {
  const resumable = options.resumable ?? true;
  const maxResumes = options.maxResumes ?? 5;
  const first = JSON.stringify(resumable ? { ...request, resumable: true } : request);
  let streamId: string | null = null;
  let lastSeq = 0;
  let resumes = 0;

  for (;;) {
    const frame: string =
      streamId === null ? first : JSON.stringify({ action: "resume", stream_id: streamId, after: lastSeq });
    const outcome = await connection(transport, frame, options.signal, {
      onStart(id) {
        streamId = id;
      },
      onDelta(seq, text) {
        if (seq !== null) {
          if (seq <= lastSeq) return;
          lastSeq = seq;
        }
        options.onDelta?.(text);
      },
    });
    if (outcome.kind === "done") {
      const error = finalError(outcome.body);
      if (error) throw error;
      const body = outcome.body;
      const result: ChatResult = {
        response: typeof body.response === "string" ? body.response : "",
        actions: Array.isArray(body.actions) ? (body.actions as ChatResult["actions"]) : [],
      };
      if (body.plan !== undefined) result.plan = body.plan;
      if (body.cancelled === true) result.cancelled = true;
      if (streamId !== null) result.streamId = streamId;
      return result;
    }
    if (outcome.kind === "error") {
      throw new AdiuvaError(outcome.status, outcome.code, outcome.detail);
    }
    // The connection dropped before the last frame.
    if (options.signal?.aborted) throw options.signal.reason;
    if (streamId === null || resumes >= maxResumes) {
      throw new AdiuvaError(
        0,
        "stream_interrupted",
        streamId === null
          ? "the connection closed before the answer ended, and the stream cannot be resumed"
          : `the connection dropped ${resumes + 1} times; the stream was not resumed`,
      );
    }
    await wait(Math.min(200 * 2 ** resumes, 3000));
    resumes += 1;
  }
}

type Outcome =
  | { kind: "done"; body: Record<string, unknown> }
  | { kind: "error"; status: number; code: string; detail: string }
  | { kind: "dropped" };

interface Handlers {
  onStart(streamId: string): void;
  onDelta(seq: number | null, text: string): void;
}

/** One socket: sends `frame` once open and reads until the last frame or until it closes. */
async function connection(
  transport: ChatTransport,
  frame: string,
  signal: AbortSignal | undefined,
  handlers: Handlers,
): Promise<Outcome> {
  const WebSocketClass = transport.WebSocket;
  if (!WebSocketClass) {
    throw new AdiuvaError(
      0,
      "websocket_unavailable",
      "no WebSocket here: pass createAdiuvaClient({ WebSocket }) (e.g. the `ws` package's)",
    );
  }
  let refreshed = false;
  for (;;) {
    const token = await transport.accessToken();
    const url = new URL(transport.url);
    if (token) url.searchParams.set("token", token);
    const socket = new WebSocketClass(url.toString());
    const result = await new Promise<Outcome | "refused">((resolve) => {
      let opened = false;
      let settled = false;
      let streamId: string | null = null;
      const parts = new FinalParts();
      const settle = (outcome: Outcome | "refused") => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener("abort", onAbort);
        resolve(outcome);
      };
      const onAbort = () => {
        if (streamId !== null && socket.readyState === 1) {
          // Cancelled on the server: the done frame `{"cancelled": true}` follows.
          socket.send(JSON.stringify({ action: "cancel", stream_id: streamId }));
        } else {
          socket.close();
        }
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      socket.addEventListener("open", () => {
        opened = true;
        socket.send(frame);
      });
      socket.addEventListener("message", (event) => {
        const data = event.data;
        const text =
          typeof data === "string"
            ? data
            : data instanceof ArrayBuffer
              ? new TextDecoder().decode(data)
              : ArrayBuffer.isView(data)
                ? new TextDecoder().decode(data)
                : String(data);
        const decoded = decode(text, parts);
        if (decoded === null) return;
        switch (decoded.kind) {
          case "start":
            streamId = decoded.streamId;
            handlers.onStart(decoded.streamId);
            return;
          case "delta":
            handlers.onDelta(decoded.seq, decoded.text);
            return;
          case "done":
            settle({ kind: "done", body: decoded.body });
            socket.close();
            return;
          case "error":
            settle({
              kind: "error",
              status: decoded.code === "not_found" ? 404 : 400,
              code: decoded.code,
              detail: decoded.detail,
            });
            socket.close();
            return;
        }
      });
      socket.addEventListener("error", () => {
        if (!opened) settle("refused");
      });
      socket.addEventListener("close", () => {
        settle(opened ? { kind: "dropped" } : "refused");
      });
    });
    if (result !== "refused") return result;
    // The upgrade was refused: most often an expired access token. Refresh once and try again.
    if (signal?.aborted) throw signal.reason;
    if (!refreshed && token && (await transport.refresh(token))) {
      refreshed = true;
      continue;
    }
    return { kind: "dropped" };
  }
}
