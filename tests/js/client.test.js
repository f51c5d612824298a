// The client as a page meets it: lazy connect, subscribe and unsubscribe, state changes,
// argument errors, failing callbacks, the client id.
"use strict";
const {test, mock} = require("node:test");
const assert = require("node:assert/strict");
const {createClient, FACTS, _internals} = require("../../static/js/pushgateway.js");
const {START, FakeSocket, server, latest, settle, client, fakeWindow, recorder, quietly, useFakes} =
  require("./fakes.js");

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

// A client on the fake socket and server, with nothing else configured.
function bare(options) {
  const fetch = (url, init) => server.fetch(url, init);
  return createClient(Object.assign({WebSocket: FakeSocket, fetch}, options));
}

test("createClient starts from the page's rendered configuration, then its own options", async () => {
  server.positions.a = {epoch: "e1", seq: 3};
  const win = fakeWindow({
    url: "ws://rendered/ws/",
    positionsUrl: "/rendered/positions/",
    pollDown: 2000,
    positions: {a: {epoch: "e1", seq: 3}},
    tokens: {a: "rendered-token"},
  });
  const pg = bare({window: win, pollDown: 4000});
  const cb = recorder();
  pg.subscribe("a", cb);
  assert.equal(latest().url, "ws://rendered/ws/");
  mock.timers.tick(3999);
  await settle();
  assert.deepEqual(server.requests, []); // the option's pollDown, not the rendered one
  mock.timers.tick(1);
  await settle();
  assert.deepEqual(server.requests, [
    {url: "/rendered/positions/", channels: ["a"], tokens: {a: "rendered-token"}},
  ]);
  latest().open();
  assert.deepEqual(latest().subscribes(), [
    {type: "subscribe", channel: "a", since: {epoch: "e1", seq: 3}, token: "rendered-token"},
  ]);
  assert.deepEqual(cb.calls, []); // the rendered position is the server's: nothing was missed
});

test("without a window option, createClient reads the global document's configuration", async () => {
  globalThis.document = fakeWindow({url: "ws://global/ws/", positionsUrl: "/global/positions/"}).document;
  try {
    bare().subscribe("a", () => {});
  } finally {
    delete globalThis.document;
  }
  assert.equal(latest().url, "ws://global/ws/");
  mock.timers.tick(5000);
  await settle();
  assert.deepEqual(server.requests, [{url: "/global/positions/", channels: ["a"], tokens: {}}]);
});

test("a page without a rendered configuration polls the default positions URL", async () => {
  const pg = bare({url: "ws://test/ws/", window: fakeWindow(undefined)});
  pg.subscribe("a", () => {});
  mock.timers.tick(5000);
  await settle();
  assert.deepEqual(server.requests, [{url: FACTS.defaults.positionsUrl, channels: ["a"], tokens: {}}]);
});

test("a rendered positionsUrl of null (the view is not installed) means blind polls", async () => {
  const cb = recorder();
  bare({url: "ws://test/ws/", window: fakeWindow({positionsUrl: null})}).subscribe("a", cb);
  mock.timers.tick(5000);
  await settle();
  assert.deepEqual(server.requests, []);
  assert.deepEqual(cb.reasons(), ["poll"]);
});

test("a rendered configuration that is not JSON is reported and ignored", async () => {
  const win = fakeWindow({});
  win.document.getElementById = () => ({textContent: "{not json"});
  const errors = [];
  const original = console.error;
  console.error = (...args) => errors.push(args[0]);
  try {
    bare({url: "ws://test/ws/", window: win}).subscribe("a", () => {});
  } finally {
    console.error = original;
  }
  assert.deepEqual(errors, ["PushGateway: #pushgateway-config is not valid JSON"]);
  mock.timers.tick(5000);
  await settle();
  assert.deepEqual(server.requests, [{url: FACTS.defaults.positionsUrl, channels: ["a"], tokens: {}}]);
});

test("createStates alone: changes in order to every listener, a failing one stops none", () => {
  const seen = [];
  const states = _internals.createStates("idle", (next, previous) => seen.push(`${previous}=>${next}`));
  const stop = states.listen(() => {
    throw new Error("page bug");
  });
  states.listen((next, previous) => seen.push(`${previous}->${next}`));
  quietly("error", () => {
    states.set("connecting");
    states.set("connecting"); // not a change: nobody is told
  });
  stop();
  states.set("idle");
  assert.deepEqual(seen, ["idle=>connecting", "idle->connecting", "connecting=>idle", "connecting->idle"]);
  assert.equal(states.get(), "idle");
});
