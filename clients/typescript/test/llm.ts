// A scripted OpenAI-compatible Chat Completions server on loopback (the model provider is the
// one third party chat talks to): each request takes the next scripted answer, as JSON or, for
// `"stream": true`, as server-sent events one chunk at a time (with the usage chunk when asked),
// the wire format of tests/src/llm.rs.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";

export class ScriptedLlm {
  readonly requests: Record<string, unknown>[] = [];
  private readonly script: string[][] = [];
  /** Pause between streamed chunks, ms. */
  chunkDelayMs = 0;
  private server!: Server;
  baseUrl = "";

  static async start(): Promise<ScriptedLlm> {
    const llm = new ScriptedLlm();
    llm.server = createServer((request, response) => {
      llm.handle(request, response).catch(() => response.destroy());
    });
    await new Promise<void>((done) => llm.server.listen(0, "127.0.0.1", done));
    const address = llm.server.address();
    if (address === null || typeof address === "string") throw new Error("no port");
    llm.baseUrl = `http://127.0.0.1:${address.port}/v1`;
    return llm;
  }

  /** Queues answers: each a list of text chunks. */
  push(...answers: string[][]): void {
    this.script.push(...answers);
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((done) => this.server.close(() => done()));
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    let raw = "";
    for await (const chunk of request) raw += chunk;
    if (request.method !== "POST" || !request.url?.endsWith("/chat/completions")) {
      response.writeHead(404).end();
      return;
    }
    const body = JSON.parse(raw) as Record<string, unknown>;
    this.requests.push(body);
    const chunks = this.script.shift();
    if (!chunks) {
      response.writeHead(500, { "content-type": "application/json" });
      response.end(JSON.stringify({ error: { message: "scripted LLM: no reply left", type: "server_error" } }));
      return;
    }
    const id = `chatcmpl-${this.requests.length}`;
    const created = Math.floor(Date.now() / 1000);
    const model = body.model;
    const messages = Array.isArray(body.messages) ? body.messages.length : 1;
    const usage = {
      prompt_tokens: 10 * messages,
      completion_tokens: Math.max(1, chunks.join("").split(/\s+/).filter(Boolean).length),
      total_tokens: 0,
    };
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
    if (body.stream !== true) {
      response.writeHead(200, { "content-type": "application/json" });
      response.end(
        JSON.stringify({
          id,
          object: "chat.completion",
          created,
          model,
          choices: [
            { index: 0, message: { role: "assistant", content: chunks.join("") }, finish_reason: "stop", logprobs: null },
          ],
          usage,
        }),
      );
      return;
    }
    response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    const event = (delta: Record<string, unknown>, finish: string | null) =>
      `data: ${JSON.stringify({
        id,
        object: "chat.completion.chunk",
        created,
        model,
        choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
      })}\n\n`;
    response.write(event({ role: "assistant", content: "" }, null));
    for (const chunk of chunks) {
      if (this.chunkDelayMs) await new Promise((done) => setTimeout(done, this.chunkDelayMs));
      if (response.destroyed) return;
      response.write(event({ content: chunk }, null));
    }
    response.write(event({}, "stop"));
    const options = body.stream_options as { include_usage?: boolean } | undefined;
    if (options?.include_usage) {
      response.write(`data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model, choices: [], usage })}\n\n`);
    }
    response.end("data: [DONE]\n\n");
  }
}
