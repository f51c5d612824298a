// Legacy Fanout.io realm mode: the Faye transport.
"use strict";
const {test, mock, beforeEach, afterEach} = require("node:test");
const assert = require("node:assert/strict");
const {START, FakeSocket, server, settle, client, recorder, quietly, useFakes} = require("./fakes.js");

useFakes();

// Fanout's Faye client as the module uses it. subscribe() fails for the paths in `failing`.
class FakeFayeClient {
  static made = [];
  static failing = new Set();
  constructor(url, options) {
    this.url = url;
    this.options = options;
    this.handlers = {};
    this.subscriptions = {};
    FakeFayeClient.made.push(this);
  }
  on(event, handler) {
    this.handlers[event] = handler;
  }
  subscribe(path, callback) {
    if (FakeFayeClient.failing.delete(path)) return Promise.reject(new Error("no subscription"));
    this.subscriptions[path] = callback;
    const promise = Promise.resolve();
    promise.cancel = () => delete this.subscriptions[path];
    return promise;
  }
  disconnect() {}
}

beforeEach(() => {
  FakeFayeClient.made = [];
  globalThis.Faye = {Client: FakeFayeClient};
});
afterEach(() => delete globalThis.Faye);

test("legacy realm mode speaks Faye and checks positions after (re)subscribing", async () => {
  const pg = client({
    transport: "faye",
    fayeUrl: "https://realm.example/bayeux",
    throttle: 0,
    positions: {"comments-1": START, events: START},
  });
  const cb = recorder();
  const other = recorder();
  const unsubscribe = pg.subscribe("comments-1", cb);
  pg.subscribe("events", other);
  await settle();
  await settle();
  const [faye] = FakeFayeClient.made;
  assert.equal(faye.url, "https://realm.example/bayeux");
  assert.deepEqual(faye.options, {transportMode: "fallback"});
  assert.deepEqual(Object.keys(faye.subscriptions), ["/comments-1", "/events"]);
  assert.equal(pg.state, "connected");
  assert.deepEqual(cb.calls, []); // nothing moved since the render

  const position = server.publish("comments-1");
  faye.subscriptions["/comments-1"]({type: "message", channel: "comments-1", id: "9", data: {pk: "1"}, position});
  assert.deepEqual(cb.calls, [{channel: "comments-1", reason: "message", data: {pk: "1"}, count: 1}]);

  faye.handlers["transport:down"]();
  assert.equal(pg.state, "waiting");
  server.publish("comments-1"); // missed while the transport was down
  faye.handlers["transport:up"]();
  await settle();
  mock.timers.tick(1); // the throttle window of the message above
  assert.equal(pg.state, "connected");
  assert.deepEqual(cb.reasons(), ["message", "resync"]);
  assert.deepEqual(other.calls, []);

  unsubscribe();
  assert.deepEqual(Object.keys(faye.subscriptions), ["/events"]);
  assert.equal(FakeSocket.all.length, 0); // no WebSocket in this mode
});

test("a Faye subscription that fails is asked for again after pollDown, and polled meanwhile", async () => {
  FakeFayeClient.failing.add("/comments-1");
  const pg = client({transport: "faye", pollDown: 3000, positions: {"comments-1": START}});
  const cb = recorder();
  pg.subscribe("comments-1", cb);
  await quietly("warn", async () => {
    await settle();
    await settle();
  });
  const [faye] = FakeFayeClient.made;
  assert.deepEqual(faye.subscriptions, {});
  assert.equal(pg.state, "connecting");
  mock.timers.tick(3000);
  await settle();
  await settle();
  assert.deepEqual(Object.keys(faye.subscriptions), ["/comments-1"]);
  assert.equal(pg.state, "connected");
  // One request for the poll while it was refused, one to check after the confirmation:
  assert.deepEqual(server.asked(), Array(2).fill(["comments-1"]));
  assert.deepEqual(cb.calls, []); // nothing moved
});
