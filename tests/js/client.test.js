// The client as a page meets it: lazy connect, subscribe and unsubscribe, state changes,
// argument errors, failing callbacks, the client id.
"use strict";
const {test, mock} = require("node:test");
const assert = require("node:assert/strict");
const {START, FakeSocket, server, latest, client, recorder, quietly, useFakes} = require("./fakes.js");

useFakes();

test("connects lazily, once per page, and subscribes on open with the rendered positions", () => {
  const pg = client({positions: {"comments-1": {epoch: "e1", seq: 4}}});
  assert.equal(FakeSocket.all.length, 0);
  assert.equal(pg.state, "idle");
  pg.subscribe("comments-1", () => {});
  pg.subscribe("events", () => {});
  assert.equal(FakeSocket.all.length, 1);
  assert.equal(pg.state, "connecting");
  latest().open();
  assert.equal(pg.state, "connected");
  assert.deepEqual(latest().sent, [
    {type: "subscribe", channel: "comments-1", since: {epoch: "e1", seq: 4}},
    {type: "subscribe", channel: "events"},
  ]);
  pg.subscribe("later", () => {});
  assert.deepEqual(latest().sent.at(-1), {type: "subscribe", channel: "later"});
  assert.equal(FakeSocket.all.length, 1);
});

test("unsubscribe leaves the channel with its last subscriber and closes when idle", () => {
  const pg = client();
  const first = pg.subscribe("a", () => {});
  const second = pg.subscribe("a", () => {});
  latest().open();
  first();
  assert.equal(latest().sent.filter((f) => f.type === "unsubscribe").length, 0);
  second();
  assert.deepEqual(latest().sent.at(-1), {type: "unsubscribe", channel: "a"});
  assert.equal(latest().closed, 1000);
  assert.equal(pg.state, "idle");
  second(); // calling it again is harmless
});

test("a message reaches every subscriber of its channel only", () => {
  server.publish("b");
  const pg = client({positions: {a: START, b: server.position("b")}});
  const a = recorder();
  const b = recorder();
  pg.subscribe("a", a);
  pg.subscribe("b", b);
  latest().open();
  latest().confirmAll();
  latest().message("a", {pk: "7"});
  assert.deepEqual(a.calls, [{channel: "a", reason: "message", data: {pk: "7"}, count: 1}]);
  assert.deepEqual(b.calls, []);
});

test("state changes are reported in order", () => {
  const pg = client();
  const states = [];
  const stop = pg.onStateChange((state, previous) => states.push(`${previous}->${state}`));
  const unsubscribe = pg.subscribe("a", () => {});
  latest().open();
  latest().drop();
  mock.timers.tick(1000);
  unsubscribe();
  stop();
  pg.subscribe("a", () => {});
  assert.deepEqual(states, [
    "idle->connecting",
    "connecting->connected",
    "connected->waiting",
    "waiting->connecting",
    "connecting->idle",
  ]);
});

test("bad arguments are clear errors", () => {
  const pg = client();
  assert.throws(() => pg.subscribe("has space", () => {}), /invalid channel name "has space"/);
  assert.throws(() => pg.subscribe("x".repeat(101), () => {}), /invalid channel name/);
  assert.throws(() => pg.subscribe("ok"), /needs a callback/);
  assert.equal(FakeSocket.all.length, 0);
});

test("a failing callback does not stop the others", () => {
  const pg = client({positions: {a: START}});
  const good = recorder();
  quietly("error", () => {
    pg.subscribe("a", () => {
      throw new Error("page bug");
    });
    pg.subscribe("a", good);
    latest().open();
    latest().confirmAll();
    latest().message("a", 1);
  });
  assert.equal(good.calls.length, 1);
});

test("fetch says which page made the request; each client has its own id", async () => {
  const seen = [];
  const pg = client({fetch: (url, init) => seen.push([url, init.headers.get("X-PushGateway-Client")])});
  await pg.fetch("/comments/", {method: "POST", headers: {"X-CSRFToken": "t"}});
  assert.deepEqual(seen, [["/comments/", pg.clientId]]);
  assert.match(pg.clientId, /^[0-9a-f]{24}$/);
  assert.notEqual(client().clientId, pg.clientId);
});
