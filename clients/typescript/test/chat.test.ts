// chat.send over the local server's WebSocket, against a scripted model: the plain protocol,
// and resuming a resumable stream after a dropped connection when the server offers it.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { AdiuvaError, type WebSocketConstructor, type WebSocketLike } from "../src/index.js";
import { ScriptedLlm } from "./llm.js";
import { LocalServer, signUp, spyFetch } from "./server.js";

const words = Array.from({ length: 30 }, (_, i) => `word${i} `);

/**
 * The platform's WebSocket, whose first connection drops (as a sleeping laptop's would) after
 * `after` frames: the client sees it close and no frame after that.
 */
function droppingWebSocket(after: number): { WebSocket: WebSocketConstructor; opened: string[] } {
  const opened: string[] = [];
  class Dropping implements WebSocketLike {
    private readonly socket: WebSocket;
    private frames = 0;
    private cut = false;
    private readonly first: boolean;

    constructor(url: string) {
      this.socket = new WebSocket(url);
      this.first = opened.length === 0;
      opened.push(url);
    }

    get readyState(): number {
      return this.socket.readyState;
    }

    send(data: string): void {
      this.socket.send(data);
    }

    close(code?: number, reason?: string): void {
      this.socket.close(code, reason);
    }

    addEventListener(type: string, listener: (event: any) => void): void {
      if (type !== "message") {
        this.socket.addEventListener(type, listener);
        return;
      }
      this.socket.addEventListener("message", (event) => {
        if (this.cut) return;
        listener(event);
        this.frames += 1;
        if (this.first && this.frames === after) {
          this.cut = true;
          this.socket.close();
        }
      });
    }
  }
  return { WebSocket: Dropping as unknown as WebSocketConstructor, opened };
}

describe("chat", () => {
  let llm: ScriptedLlm;
  let server: LocalServer;
  before(async () => {
    llm = await ScriptedLlm.start();
    // No retries of the model: the error test meets its 500 once.
    server = await LocalServer.start({
      LLM_BASE_URL: llm.baseUrl,
      OPENAI_API_KEY: "test-key",
      LLM_MAX_RETRIES: "0",
      // Access tokens good for the server's 5 s of leeway: one test lets its token expire.
      JWT_ACCESS_TOKEN_EXPIRE_MINUTES: "0",
    });
  });
  after(async () => {
    await server.stop();
    await llm.stop();
  });

  test("send streams the answer into onDelta and resolves with the final frame", async () => {
    const client = server.client();
    await signUp(client);
    llm.push(["task_agent"], words);
    const deltas: string[] = [];

    const result = await client.chat.send(
      { message: "What is due today?", context: { recent_tasks: [] } },
      { resumable: false, onDelta: (text) => deltas.push(text) },
    );

    assert.ok(deltas.length > 1, `streamed in pieces: ${deltas.length}`);
    assert.equal(deltas.join(""), words.join(""));
    assert.equal(result.response, words.join(""));
    assert.deepEqual(result.actions, []);
    assert.equal(result.streamId, undefined);
    const streamed = llm.requests.at(-1)!;
    assert.equal(streamed.stream, true);
  });

  test("an error of the chat is its final frame, thrown typed", async () => {
    const client = server.client();
    await signUp(client);
    // The script is empty: the model answers 500 to the router.
    const err = await client.chat
      .send({ message: "hello", context: { recent_tasks: [] } }, { resumable: false })
      .catch((e) => e);
    assert.ok(err instanceof AdiuvaError, `${err}`);
    assert.ok(err.status >= 500, `${err.status} ${err.code}`);
  });

  test("an expired token's refused upgrade is refreshed once and the chat goes through", async () => {
    const spy = spyFetch();
    const client = server.client({ fetch: spy.fetch });
    await signUp(client);
    await new Promise((done) => setTimeout(done, 6_500));
    spy.exchanges.length = 0;
    llm.push(["task_agent"], ["All ", "done."]);
    const result = await client.chat.send({ message: "Anything due?" }, { resumable: false });
    assert.equal(result.response, "All done.");
    assert.equal(spy.exchanges.filter((e) => e.path === "/api/v1/auth/refresh").length, 1);
  });

  test("a resumable stream survives a dropped connection: every delta once, in order", async () => {
    llm.push(["task_agent"], words);
    llm.chunkDelayMs = 30;
    const dropping = droppingWebSocket(4);
    const cut = server.client({ WebSocket: dropping.WebSocket });
    await signUp(cut);
    const deltas: string[] = [];
    const result = await cut.chat.send(
      { message: "What is due today?", context: { recent_tasks: [] } },
      { onDelta: (text) => deltas.push(text) },
    );
    llm.chunkDelayMs = 0;

    assert.equal(dropping.opened.length, 2, "one reconnection");
    assert.equal(deltas.join(""), words.join(""));
    assert.equal(result.response, words.join(""));
    assert.ok(result.streamId);
  });
});
