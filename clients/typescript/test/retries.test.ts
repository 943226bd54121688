// Waiting out 429 with Retry-After, bounded; an idempotent create retried after its answer
// was lost, processed once.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { AdiuvaError } from "../src/index.js";
import { LocalServer, PASSWORD, email, signUp, spyFetch } from "./server.js";

describe("retries", () => {
  let server: LocalServer;
  before(async () => {
    // One failed sign-in locks the email for a sliding window of two seconds.
    server = await LocalServer.start({
      AUTH_FAILURE_WINDOW_SECONDS: "2",
      AUTH_FAILURES_PER_EMAIL: "1",
    });
  });
  after(() => server.stop());

  test("a 429 is waited out for its Retry-After, then retried", async () => {
    const address = email();
    await server.client().auth.register({ email: address, password: PASSWORD });
    const spy = spyFetch();
    const client = server.client({ fetch: spy.fetch, retry: { attempts: 5, maxWaitMs: 20_000 } });
    const wrong = await client.auth.login({ email: address, password: "not-the-password" }).catch((e) => e);
    assert.ok(wrong instanceof AdiuvaError);
    assert.equal(wrong.code, "invalid_credentials");

    const started = Date.now();
    await client.auth.login({ email: address, password: PASSWORD });
    const elapsed = Date.now() - started;

    const logins = spy.exchanges.filter((e) => e.path === "/api/v1/auth/login").slice(1);
    assert.ok(logins.length >= 2, `refused first, then let in: ${logins.map((e) => e.status)}`);
    assert.equal(logins[0].status, 429);
    assert.equal(logins.at(-1)!.status, 200);
    for (const refused of logins.slice(0, -1)) assert.equal(refused.status, 429);
    const waits = logins
      .slice(0, -1)
      .map((e) => Number(e.response.headers.get("retry-after")) * 1000);
    const waited = waits.reduce((sum, ms) => sum + ms, 0);
    assert.ok(waited >= 1000, `Retry-After named ${waits}`);
    assert.ok(elapsed >= waited - 50, `waited ${elapsed} ms of the ${waited} ms asked`);
    assert.equal(client.auth.state, "signed-in");
  });

  test("a wait past the bound is not made: the 429 is the error", async () => {
    const address = email();
    await server.client().auth.register({ email: address, password: PASSWORD });
    const client = server.client({ retry: { attempts: 3, maxWaitMs: 100 } });
    await client.auth.login({ email: address, password: "not-the-password" }).catch(() => {});
    const started = Date.now();
    const err = await client.auth.login({ email: address, password: PASSWORD }).catch((e) => e);
    assert.ok(err instanceof AdiuvaError);
    assert.equal(err.status, 429);
    assert.equal(err.code, "too_many_failures");
    assert.ok(Date.now() - started < 1000, "did not wait");
  });

  test("a create whose answer was lost is sent again with the same key and stored once", async () => {
    let dropped = false;
    const spy = spyFetch(async (request, send) => {
      const response = await send();
      if (!dropped && request.method === "POST" && request.url.endsWith("/api/v1/storage/records")) {
        dropped = true;
        // The server stored the record; its answer never arrives.
        await response.body?.cancel();
        throw new TypeError("fetch failed: socket hang up");
      }
      return response;
    });
    const client = server.client({ fetch: spy.fetch, retry: { baseDelayMs: 50 } });
    await signUp(client, "pro");

    const created = await client.records.create({ table: "notes", data: new Uint8Array([1, 2, 3]) });

    const posts = spy.exchanges.filter(
      (e) => e.method === "POST" && e.path === "/api/v1/storage/records",
    );
    // The spy records only answers that reached the client: the replay.
    assert.equal(posts.length, 1);
    assert.equal(posts[0].status, 201);
    assert.equal(posts[0].response.headers.get("idempotent-replayed"), "true");
    const all = [];
    for await (const meta of client.records.list()) all.push(meta);
    assert.deepEqual(all.map((meta) => meta.id), [created.id]);
    assert.equal(created.version, 1);
  });

  test("one logical call keeps its key across attempts; two calls have two keys", async () => {
    const keys: (string | null)[] = [];
    let failures = 2;
    const spy = spyFetch(async (request, send) => {
      if (request.method === "POST" && request.url.endsWith("/api/v1/storage/records")) {
        keys.push(request.headers.get("idempotency-key"));
        if (failures > 0) {
          failures -= 1;
          throw new TypeError("fetch failed: connection reset");
        }
      }
      return send();
    });
    const client = server.client({ fetch: spy.fetch, retry: { baseDelayMs: 10 } });
    await signUp(client, "pro");
    await client.records.create({ table: "notes", data: new Uint8Array([1]) });
    await client.records.create({ table: "notes", data: new Uint8Array([1]) });
    assert.equal(keys.length, 4);
    assert.equal(keys[0], keys[1]);
    assert.equal(keys[1], keys[2]);
    assert.notEqual(keys[2], keys[3]);
    assert.match(keys[0] ?? "", /^[0-9a-f-]{36}$/);
  });
});
