// Legacy Fanout.io realm mode: the Faye transport.
"use strict";
const {test, mock} = require("node:test");
const assert = require("node:assert/strict");
const {START, FakeSocket, server, settle, client, recorder, useFakes} = require("./fakes.js");

useFakes();

test("legacy realm mode speaks Faye and checks positions after (re)subscribing", async () => {
  const made = [];
  class FakeFayeClient {
    constructor(url, options) {
      this.url = url;
      this.options = options;
      this.handlers = {};
      this.subscriptions = {};
      made.push(this);
    }
    on(event, handler) {
      this.handlers[event] = handler;
    }
    subscribe(path, callback) {
      this.subscriptions[path] = callback;
      const promise = Promise.resolve();
      promise.cancel = () => delete this.subscriptions[path];
      return promise;
    }
    disconnect() {}
  }
  globalThis.Faye = {Client: FakeFayeClient};
  try {
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
    const [faye] = made;
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
  } finally {
    delete globalThis.Faye;
  }
});
