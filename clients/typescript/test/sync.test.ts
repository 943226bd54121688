// Two devices of one account keep encrypted notes in step through the changes feed; the
// server's files never hold a note's text; a cursor the feed forgot is a typed "start over".
import assert from "node:assert/strict";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { type AdiuvaClient, StartOverError, decrypt, encrypt, exportKey, generateKey, importKey } from "../src/index.js";
import { LocalServer, PASSWORD, signUp } from "./server.js";

const text = new TextEncoder();
const untext = new TextDecoder();

/** A device's notes: the last synced state of each, decrypted. */
class Device {
  readonly notes = new Map<string, { version: number; body: string }>();
  cursor: string | undefined;

  constructor(readonly client: AdiuvaClient, readonly key: CryptoKey) {}

  async write(body: string): Promise<string> {
    const sealed = await encrypt(this.key, text.encode(body));
    const { id, version } = await this.client.records.create({ table: "notes", data: sealed });
    this.notes.set(id, { version, body });
    return id;
  }

  async update(id: string, body: string): Promise<void> {
    const note = this.notes.get(id)!;
    const sealed = await encrypt(this.key, text.encode(body));
    const { version } = await this.client.records.update(id, sealed, { ifMatch: note.version });
    this.notes.set(id, { version, body });
  }

  async remove(id: string): Promise<void> {
    await this.client.records.delete(id);
    this.notes.delete(id);
  }

  /** Pulls what changed since the last sync and applies it. */
  async pull(): Promise<number> {
    const feed = this.client.sync.changes({ since: this.cursor, limit: 2 });
    let changes = 0;
    for await (const change of feed) {
      changes += 1;
      if (change.deleted) {
        this.notes.delete(change.id);
      } else if ("version" in change) {
        const sealed = await this.client.records.get(change.id);
        const body = untext.decode(await decrypt(this.key, sealed));
        this.notes.set(change.id, { version: change.version, body });
      }
    }
    this.cursor = feed.cursor;
    return changes;
  }

  bodies(): string[] {
    return [...this.notes.values()].map((note) => note.body).sort();
  }
}

/** Every file under `dir`, recursively. */
async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await files(path)));
    else out.push(path);
  }
  return out;
}

describe("sync", () => {
  let server: LocalServer;
  before(async () => {
    server = await LocalServer.start({ TOMBSTONE_RETENTION_DAYS: "0" });
  });
  after(() => server.stop());

  test("device B ends with device A's notes, and the server's files hold no plaintext", async () => {
    const laptop = server.client();
    const address = await signUp(laptop, "pro");
    const phone = server.client();
    await phone.auth.login({ email: address, password: PASSWORD });
    // The key goes from device to device outside the server (here: its raw bytes).
    const key = await generateKey();
    const a = new Device(laptop, key);
    const b = new Device(phone, await importKey(await exportKey(key)));

    const secrets = [
      "PLAINTEXT-ALPHA: the launch date is the 14th",
      "PLAINTEXT-BRAVO: call the bank about the loan",
      "PLAINTEXT-CHARLIE: groceries, oat milk, coffee",
      "PLAINTEXT-DELTA: passport renewal",
      "PLAINTEXT-ECHO: draft of the speech",
    ];
    const ids = [];
    for (const secret of secrets) ids.push(await a.write(secret));
    assert.equal(await b.pull(), 5);
    assert.deepEqual(b.bodies(), a.bodies());

    await a.update(ids[1], "PLAINTEXT-BRAVO-2: the bank called back");
    await a.remove(ids[2]);
    await a.write("PLAINTEXT-FOXTROT: a new note");
    assert.equal(await b.pull(), 3, "the update, the deletion and the new note, once each");
    assert.deepEqual(b.bodies(), a.bodies());
    assert.equal(b.notes.size, 5);
    assert.equal(b.notes.get(ids[1])?.version, 2);
    assert.ok(!b.notes.has(ids[2]));

    // Caught up: nothing new, and the cursor stays usable.
    assert.equal(await b.pull(), 0);
    assert.deepEqual(b.bodies(), a.bodies());

    // The server's files (the SQLite database with its journal, the blob folder) hold
    // ciphertext only: no note's text, not even its distinctive prefix.
    const stored = await files(server.dataDir);
    assert.ok(stored.some((path) => path.endsWith("adiuva.db")), `the database is there: ${stored}`);
    assert.ok(stored.some((path) => path.includes("blobs")), `the blob folder is there: ${stored}`);
    let bytes = 0;
    for (const path of stored) {
      const content = await readFile(path);
      bytes += (await stat(path)).size;
      for (const needle of ["PLAINTEXT", "bank", "passport"]) {
        assert.equal(content.indexOf(needle), -1, `${path} holds "${needle}"`);
      }
    }
    assert.ok(bytes > 0);
  });

  test("a cursor older than the kept deletions throws StartOverError; from the start, sync recovers", async () => {
    const laptop = server.client();
    const address = await signUp(laptop, "pro");
    const phone = server.client();
    await phone.auth.login({ email: address, password: PASSWORD });
    const key = await generateKey();
    const a = new Device(laptop, key);
    const b = new Device(phone, key);
    const kept = await a.write("kept");
    const removed = await a.write("removed");
    await b.pull();
    await a.remove(removed);
    // The daily job forgets tombstones past the retention (0 days here).
    const summary = await server.command(["job", "purge-tombstones"]);
    assert.match(summary, /"deleted":[1-9]/);

    const err = await b.pull().catch((e) => e);
    assert.ok(err instanceof StartOverError, `${err}`);
    assert.equal(err.status, 410);
    assert.equal(err.code, "cursor_expired");

    b.cursor = undefined;
    b.notes.clear();
    await b.pull();
    assert.deepEqual([...b.notes.keys()], [kept]);
    assert.deepEqual(b.bodies(), a.bodies());
  });
});
