// Records: paging through 250, a blob over the inline limit (the upload flow and the download
// redirect of the local server's URL stand-in), and updates with If-Match.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { AdiuvaError, sha256Hex } from "../src/index.js";
import { LocalServer, signUp, spyFetch } from "./server.js";

describe("records", () => {
  let server: LocalServer;
  before(async () => {
    // Small limits, so that a 1 MiB blob is "large" both ways.
    server = await LocalServer.start({
      MAX_BODY_BYTES: String(256 * 1024),
      INLINE_DOWNLOAD_BYTES: String(128 * 1024),
    });
  });
  after(() => server.stop());

  test("list pages through 250 records, each once", async () => {
    const spy = spyFetch();
    const client = server.client({ fetch: spy.fetch });
    await signUp(client, "pro");
    const created = new Set<string>();
    for (let batch = 0; batch < 25; batch += 1) {
      const ids = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          client.records
            .create({ table: "tasks", data: new TextEncoder().encode(`task ${batch * 10 + i}`) })
            .then((record) => record.id),
        ),
      );
      for (const id of ids) created.add(id);
    }
    await client.records.create({ table: "notes", data: new Uint8Array([7]) });
    spy.exchanges.length = 0;

    const seen: string[] = [];
    for await (const meta of client.records.list({ table: "tasks" })) {
      assert.equal(meta.table, "tasks");
      seen.push(meta.id);
    }

    assert.equal(seen.length, 250);
    assert.deepEqual(new Set(seen), created);
    const pages = spy.exchanges.filter((e) => e.path === "/api/v1/storage/records");
    assert.equal(pages.length, 5, "the server's default page of 50");
    assert.ok(pages.slice(0, 4).every((page) => page.response.headers.get("x-next-cursor")));
    assert.equal(pages[4].response.headers.get("x-next-cursor"), null);
  });

  test("a blob over the inline limit goes up through an upload URL and comes back through a redirect", async () => {
    const spy = spyFetch();
    const client = server.client({ fetch: spy.fetch });
    await signUp(client, "pro");
    const data = new Uint8Array(randomBytes(1024 * 1024));

    const created = await client.records.create({ table: "files", data });

    const steps = spy.exchanges
      .filter((e) => !e.path.startsWith("/api/v1/auth") && !e.path.startsWith("/api/v1/billing"))
      .map((e) => `${e.method} ${e.path.replace(/\/[^/]{20,}(?=\/|$)/g, "/*")} ${e.status}`);
    assert.deepEqual(steps, [
      // Sent whole first (the client's inline limit is the server's default): too large here.
      "POST /api/v1/storage/records 413",
      "POST /api/v1/storage/uploads 201",
      "PUT /api/v1/storage/blobs/* 200",
      "POST /api/v1/storage/uploads/*/commit 200",
    ]);
    assert.equal(created.version, 1);
    assert.equal(created.size_bytes, data.byteLength);
    assert.equal(created.checksum, await sha256Hex(data));

    spy.exchanges.length = 0;
    const back = await client.records.get(created.id);
    assert.deepEqual(back, data);
    const [download] = spy.exchanges;
    assert.ok(download.response.redirected, "the record's GET answered a 307");
    assert.match(new URL(download.response.url).pathname, /^\/api\/v1\/storage\/blobs\//);

    // Replacing it takes the same way, at the version it was.
    const next = new Uint8Array(randomBytes(512 * 1024));
    const updated = await client.records.update(created.id, next, { ifMatch: 1 });
    assert.equal(updated.version, 2);
    assert.deepEqual(await client.records.get(created.id), next);
  });

  test("a client with a small inline limit uploads at once", async () => {
    const spy = spyFetch();
    const client = server.client({ fetch: spy.fetch, maxInlineBytes: 1024 });
    await signUp(client, "pro");
    const data = new Uint8Array(randomBytes(4096));
    const created = await client.records.create({ table: "files", data });
    assert.ok(!spy.exchanges.some((e) => e.method === "POST" && e.path === "/api/v1/storage/records"));
    assert.deepEqual(await client.records.get(created.id), data);
  });

  test("update with a stale If-Match is 412; delete removes", async () => {
    const client = server.client();
    await signUp(client, "pro");
    const { id } = await client.records.create({ table: "notes", data: new Uint8Array([1]) });
    const updated = await client.records.update(id, new Uint8Array([2]), { ifMatch: 1 });
    assert.equal(updated.version, 2);
    const stale = await client.records.update(id, new Uint8Array([3]), { ifMatch: 1 }).catch((e) => e);
    assert.ok(stale instanceof AdiuvaError);
    assert.equal(stale.status, 412);
    assert.deepEqual(await client.records.get(id), new Uint8Array([2]));
    await client.records.delete(id);
    const gone = await client.records.get(id).catch((e) => e);
    assert.ok(gone instanceof AdiuvaError);
    assert.equal(gone.status, 404);
    assert.equal(gone.code, "not_found");
  });

  test("a free account cannot store: the quota error is typed", async () => {
    const client = server.client();
    await signUp(client);
    const err = await client.records.create({ table: "notes", data: new Uint8Array([1]) }).catch((e) => e);
    assert.ok(err instanceof AdiuvaError);
    assert.equal(err.status, 402);
    assert.equal(err.code, "quota_exceeded");
  });

  test("backups: stored whole or through an upload, read back, listed, deleted", async () => {
    const client = server.client();
    await signUp(client, "pro");
    assert.equal(await client.backups.latest(), null);
    const small = new Uint8Array(randomBytes(1000));
    const first = await client.backups.put(small, { version: 3, timestamp: 1_700_000_000_000 });
    assert.equal(first.version, 3);
    assert.equal(first.size_bytes, 1000);
    assert.deepEqual(await client.backups.latest(), small);
    // Over the server's body limit here: the upload flow, and a redirect back.
    const large = new Uint8Array(randomBytes(512 * 1024));
    const second = await client.backups.put(large, { version: 3, timestamp: 1_700_000_001_000 });
    assert.equal(second.size_bytes, large.byteLength);
    assert.deepEqual(await client.backups.latest(), large);
    const history = [];
    for await (const backup of client.backups.history()) history.push(backup.id);
    assert.deepEqual(history, [second.id, first.id]);
    await client.backups.delete(second.id);
    assert.deepEqual(await client.backups.latest(), small);
  });

  test("vectors: upsert, search, delete", async () => {
    const client = server.client();
    await signUp(client);
    const vector = (i: number) => Array.from({ length: 32 }, (_, d) => (d === i ? 1 : 0));
    const upserted = await client.vectors.upsert([
      { id: "a", data: new Uint8Array([1]), vector: vector(0) },
      { id: "b", data: new Uint8Array([2]), vector: vector(1) },
    ]);
    assert.equal(upserted.upserted, 2);
    const found = await client.vectors.search({ data: new Uint8Array([9]), vector: vector(1), topK: 1 });
    assert.deepEqual(found.map((hit) => [hit.id, [...hit.data]]), [["b", [2]]]);
    await client.vectors.delete(["b"]);
    const left = await client.vectors.search({ data: new Uint8Array([9]), vector: vector(1), topK: 5 });
    assert.deepEqual(left.map((hit) => hit.id), ["a"]);
  });
});
