// Sign-up, the single-flight refresh of expired tokens, and the signed-out state.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { AdiuvaError, memoryTokenStore } from "../src/index.js";
import { LocalServer, PASSWORD, signUp, spyFetch } from "./server.js";

describe("auth", () => {
  let server: LocalServer;
  before(async () => {
    // Access tokens that expire at once: the server accepts them for its 5 s of leeway.
    server = await LocalServer.start({ JWT_ACCESS_TOKEN_EXPIRE_MINUTES: "0" });
  });
  after(() => server.stop());

  test("sign-up stores the tokens and signs the client in", async () => {
    const store = memoryTokenStore();
    const client = server.client({ tokens: store });
    assert.equal(client.auth.state, "signed-out");
    const address = await signUp(client);
    assert.equal(client.auth.state, "signed-in");
    const tokens = await store.get();
    assert.ok(tokens?.accessToken && tokens.refreshToken);
    const me = await client.auth.me();
    assert.equal(me.email, address);
    assert.equal(me.tier, "free");

    // A taken email is the API's error, typed.
    const other = server.client();
    const err = await other.auth.register({ email: address, password: PASSWORD }).catch((e) => e);
    assert.ok(err instanceof AdiuvaError);
    assert.equal(err.status, 409);
    assert.equal(err.code, "email_taken");
    assert.match(err.requestId ?? "", /.+/);
  });

  test("ten calls that meet an expired token share one refresh", async () => {
    const spy = spyFetch();
    const store = memoryTokenStore();
    const client = server.client({ tokens: store, fetch: spy.fetch });
    await signUp(client);
    const first = await store.get();
    // Past the access token's expiry and the server's leeway.
    await new Promise((done) => setTimeout(done, 6_500));
    spy.exchanges.length = 0;

    const profiles = await Promise.all(Array.from({ length: 10 }, () => client.auth.me()));

    assert.equal(profiles.length, 10);
    for (const profile of profiles) assert.equal(profile.id, profiles[0].id);
    const me = spy.exchanges.filter((e) => e.path === "/api/v1/auth/me");
    assert.equal(me.filter((e) => e.status === 401).length, 10, "each call met the expired token");
    assert.equal(me.filter((e) => e.status === 200).length, 10, "and was retried once");
    const refreshes = spy.exchanges.filter((e) => e.path === "/api/v1/auth/refresh");
    assert.equal(refreshes.length, 1, "one refresh for all ten");
    assert.equal(refreshes[0].status, 200);
    const rotated = await store.get();
    assert.notEqual(rotated?.refreshToken, first?.refreshToken, "the rotated refresh token is stored");
    assert.equal(client.auth.state, "signed-in");
    // The stored refresh token is the live one: had a second refresh used the old one again,
    // the server would have ended the session (reuse detection) and refused it.
    const next = await fetch(`${server.baseUrl}/api/v1/auth/refresh`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ refresh_token: rotated?.refreshToken }),
    });
    assert.equal(next.status, 200);
  });

  test("a refused refresh signs the client out", async () => {
    const store = memoryTokenStore();
    let signedOut = 0;
    const laptop = server.client({ tokens: store, onSignedOut: () => (signedOut += 1) });
    const address = await signUp(laptop);
    const phone = server.client();
    await phone.auth.login({ email: address, password: PASSWORD });
    // The phone ends the laptop's session.
    const { data: sessions } = await phone.raw.GET("/api/v1/auth/sessions");
    const laptopSession = sessions?.find((session) => !session.current);
    assert.ok(laptopSession);
    const { response } = await phone.raw.DELETE("/api/v1/auth/sessions/{id}", {
      params: { path: { id: laptopSession.id } },
    });
    assert.equal(response.status, 204);

    const err = await laptop.auth.me().catch((e) => e);
    assert.ok(err instanceof AdiuvaError);
    assert.equal(err.status, 401);
    assert.equal(laptop.auth.state, "signed-out");
    assert.equal(signedOut, 1);
    assert.equal(await store.get(), null);
    // The phone is still signed in.
    assert.equal((await phone.auth.me()).email, address);
  });

  test("tokens an app kept from an earlier run sign a new client in", async () => {
    const first = memoryTokenStore();
    const address = await signUp(server.client({ tokens: first }));
    const kept = memoryTokenStore(await first.get());
    const client = server.client({ tokens: kept });
    assert.equal((await client.auth.me()).email, address);
    assert.equal(client.auth.state, "signed-in");
  });

  test("logout ends the session and forgets the tokens", async () => {
    const store = memoryTokenStore();
    const client = server.client({ tokens: store });
    await signUp(client);
    const { refreshToken } = (await store.get())!;
    await client.auth.logout();
    assert.equal(await store.get(), null);
    assert.equal(client.auth.state, "signed-out");
    const refused = await fetch(`${server.baseUrl}/api/v1/auth/refresh`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ refresh_token: refreshToken }),
    });
    assert.equal(refused.status, 401);
  });
});
