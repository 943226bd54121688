// The real `adiuva-local` for the tests: the workspace's debug build (scripts/test.sh builds it
// first), started on a free loopback port with a fresh data folder per server, from an empty
// working directory (so no `.env` is read), with the settings a test asks for.
import { type ChildProcess, spawn, execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { createAdiuvaClient, type AdiuvaClient, type AdiuvaClientOptions } from "../src/index.js";

/** The repository's root: build-test/test/ is three levels under clients/typescript. */
const packageDir = resolve(fileURLToPath(import.meta.url), "../../..");
const root = resolve(packageDir, "../..");

/** The binary the README runs (`cargo run -p local`), as built for the tests. */
export function binary(): string {
  if (process.env.ADIUVA_LOCAL) return process.env.ADIUVA_LOCAL;
  const target = process.env.CARGO_TARGET_DIR
    ? resolve(root, process.env.CARGO_TARGET_DIR)
    : join(root, "target");
  const path = join(target, "debug", "adiuva-local");
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: build it with \`cargo build --workspace --bin adiuva-local\` (scripts/test.sh does)`);
  }
  return path;
}

export function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => done(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/** What every test server runs with unless a test says otherwise. */
const DEFAULTS: Record<string, string> = {
  LOG_FORMAT: "json",
  RUST_LOG: "warn",
  // Fast password hashing, and the tier limits off unless a test wants them.
  BCRYPT_COST: "4",
  RATE_LIMIT_ENABLED: "false",
  AUTH_REGISTRATIONS_PER_ADDRESS: "1000",
};

export class LocalServer {
  readonly baseUrl: string;
  readonly dataDir: string;
  private readonly env: Record<string, string>;
  private readonly child: ChildProcess;
  private readonly work: string;
  private log = "";

  private constructor(work: string, port: number, env: Record<string, string>, child: ChildProcess) {
    this.work = work;
    this.dataDir = env.ADIUVA_DATA_DIR;
    this.baseUrl = `http://127.0.0.1:${port}`;
    this.env = env;
    this.child = child;
    child.stdout?.on("data", (chunk) => (this.log += chunk));
    child.stderr?.on("data", (chunk) => (this.log += chunk));
  }

  /** Starts a server with `settings` on top of the defaults and waits until it answers. */
  static async start(settings: Record<string, string> = {}): Promise<LocalServer> {
    const work = await mkdtemp(join(tmpdir(), "adiuva-client-"));
    const port = await freePort();
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: process.env.HOME ?? work,
      ...DEFAULTS,
      ADIUVA_DATA_DIR: join(work, "data"),
      PORT: String(port),
      ...settings,
    };
    const child = spawn(binary(), [], { cwd: work, env, stdio: ["ignore", "pipe", "pipe"] });
    const server = new LocalServer(work, port, env, child);
    await server.ready();
    return server;
  }

  private async ready(): Promise<void> {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null) break;
      try {
        const response = await fetch(`${this.baseUrl}/api/v1/health`);
        if (response.ok) return;
      } catch {
        // Not listening yet.
      }
      await new Promise((done) => setTimeout(done, 100));
    }
    throw new Error(`adiuva-local did not start:\n${this.log}`);
  }

  /** A client of this server. */
  client(options: Partial<AdiuvaClientOptions> = {}): AdiuvaClient {
    return createAdiuvaClient({ baseUrl: this.baseUrl, ...options });
  }

  /** Runs `adiuva-local <args>` against this server's data (`job purge-tombstones`, ...). */
  async command(args: string[], settings: Record<string, string> = {}): Promise<string> {
    const { stdout } = await promisify(execFile)(binary(), args, {
      cwd: this.work,
      env: { ...this.env, ...settings },
    });
    return stdout;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null) {
      const exited = new Promise((done) => this.child.once("exit", done));
      this.child.kill("SIGTERM");
      await exited;
    }
    await rm(this.work, { recursive: true, force: true });
  }
}

let emails = 0;
/** A new address for each sign-up of a run. */
export function email(): string {
  emails += 1;
  return `user${emails}-${process.pid}-${Date.now()}@example.com`;
}

export const PASSWORD = "correct-horse-battery";

/** Signs `client` up as a new user and pays for `tier` through the stub checkout page. */
export async function signUp(client: AdiuvaClient, tier: "free" | "pro" | "power" = "free") {
  const address = email();
  await client.auth.register({ email: address, password: PASSWORD });
  if (tier !== "free") {
    const { checkout_url } = await client.billing.checkout({ tier });
    const page = await fetch(checkout_url);
    if (!page.ok) throw new Error(`the stub checkout page answered ${page.status}`);
    const profile = await client.auth.me();
    if (profile.tier !== tier) throw new Error(`signed up as ${profile.tier}, not ${tier}`);
  }
  return address;
}

/** Every request a client sends and what it got, for tests to look at. */
export interface Exchange {
  method: string;
  path: string;
  headers: Headers;
  status: number;
  response: Response;
}

/** A `fetch` that records each exchange (and lets a test step in before or after). */
export function spyFetch(
  around?: (request: Request, send: () => Promise<Response>) => Promise<Response>,
): { fetch: (request: Request) => Promise<Response>; exchanges: Exchange[] } {
  const exchanges: Exchange[] = [];
  const fetchSpy = async (request: Request): Promise<Response> => {
    const headers = new Headers(request.headers);
    const send = () => globalThis.fetch(request);
    const response = around ? await around(request, send) : await send();
    exchanges.push({
      method: request.method,
      path: new URL(request.url).pathname,
      headers,
      status: response.status,
      response,
    });
    return response;
  };
  return { fetch: fetchSpy, exchanges };
}
