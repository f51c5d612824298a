// The browser module under node's test runner: fake timers, a fake WebSocket.
"use strict";
const {test, beforeEach, afterEach, mock} = require("node:test");
const assert = require("node:assert/strict");
const {createClient} = require("../../static/js/pushgateway.js");

class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.closed = null;
    FakeSocket.all.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close(code) {
    this.closed = code;
  }
  // Server side of the fake:
  open() {
    this.onopen();
  }
  deliver(frame) {
    this.onmessage({data: JSON.stringify(frame)});
  }
  drop() {
    this.onclose({code: 1006});
  }
  confirmAll() {
    for (const frame of this.sent) {
      if (frame.type === "subscribe") this.deliver({type: "subscribed", channel: frame.channel});
    }
  }
}

const latest = () => FakeSocket.all[FakeSocket.all.length - 1];

function client(options) {
  return createClient(
    Object.assign({url: "ws://test/ws/pushgateway/", WebSocket: FakeSocket, random: () => 0.5}, options)
  );
}

function recorder() {
  const calls = [];
  const callback = (event) => calls.push(event);
  callback.calls = calls;
  callback.reasons = () => calls.map((c) => c.reason);
  return callback;
}

// A client with one subscription, connected and confirmed by the server.
function subscribed(channel, options, subscribeOptions) {
  const pg = client(options);
  const cb = recorder();
  pg.subscribe(channel, cb, subscribeOptions);
  latest().open();
  latest().confirmAll();
  return {pg, cb};
}

beforeEach(() => {
  FakeSocket.all = [];
  mock.timers.enable({apis: ["setTimeout"]});
});
afterEach(() => mock.timers.reset());

test("connects lazily, once per page, and subscribes on open", () => {
  const pg = client();
  assert.equal(FakeSocket.all.length, 0);
  assert.equal(pg.state, "idle");
  pg.subscribe("comments-1", () => {});
  pg.subscribe("events", () => {});
  assert.equal(FakeSocket.all.length, 1);
  assert.equal(pg.state, "connecting");
  latest().open();
  assert.equal(pg.state, "connected");
  assert.deepEqual(latest().sent, [
    {type: "subscribe", channel: "comments-1"},
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
  const pg = client();
  const a = recorder();
  const b = recorder();
  pg.subscribe("a", a);
  pg.subscribe("b", b);
  latest().open();
  latest().confirmAll();
  latest().deliver({type: "message", channel: "a", id: "1", data: {pk: "7"}});
  assert.deepEqual(a.calls, [{channel: "a", reason: "message", data: {pk: "7"}, count: 1}]);
  assert.deepEqual(b.calls, []);
});

test("the same message id is delivered once", () => {
  const {cb} = subscribed("a", {throttle: 0});
  for (let i = 0; i < 2; i++) latest().deliver({type: "message", channel: "a", id: "x", data: 1});
  mock.timers.tick(1);
  assert.equal(cb.calls.length, 1);
});

test("throttle fires on the leading and trailing edge with the latest hint and a count", () => {
  const {cb} = subscribed("a");
  for (let i = 1; i <= 4; i++) latest().deliver({type: "message", channel: "a", id: String(i), data: i});
  assert.deepEqual(cb.calls, [{channel: "a", reason: "message", data: 1, count: 1}]);
  mock.timers.tick(499);
  assert.equal(cb.calls.length, 1);
  mock.timers.tick(1);
  assert.deepEqual(cb.calls[1], {channel: "a", reason: "message", data: 4, count: 3});
  mock.timers.tick(500); // quiet window: nothing more
  assert.equal(cb.calls.length, 2);
  latest().deliver({type: "message", channel: "a", id: "5", data: 5});
  assert.deepEqual(cb.calls[2], {channel: "a", reason: "message", data: 5, count: 1});
});

test("per-subscription throttle option", () => {
  const {cb} = subscribed("a", {}, {throttle: 2000});
  latest().deliver({type: "message", channel: "a", id: "1", data: 1});
  latest().deliver({type: "message", channel: "a", id: "2", data: 2});
  mock.timers.tick(1999);
  assert.equal(cb.calls.length, 1);
  mock.timers.tick(1);
  assert.equal(cb.calls.length, 2);
});

test("polls every 5 s while push is down and every 5 min while it is up", () => {
  const pg = client();
  const cb = recorder();
  pg.subscribe("a", cb);
  mock.timers.tick(5000);
  assert.deepEqual(cb.reasons(), ["poll"]);
  mock.timers.tick(5000);
  assert.deepEqual(cb.reasons(), ["poll", "poll"]);

  latest().open();
  latest().confirmAll(); // live now: the next poll is 5 min away
  mock.timers.tick(299999);
  assert.deepEqual(cb.reasons(), ["poll", "poll"]);
  mock.timers.tick(1);
  assert.deepEqual(cb.reasons(), ["poll", "poll", "poll"]);

  latest().drop(); // down again: back to 5 s
  mock.timers.tick(5000);
  assert.equal(cb.reasons().at(-1), "poll");
  assert.equal(cb.calls.length, 4);
});

test("a subscription the server refuses keeps polling fast", () => {
  const pg = client();
  const cb = recorder();
  pg.subscribe("a", cb);
  latest().open();
  latest().deliver({type: "error", code: "forbidden", message: "no", channel: "a"});
  mock.timers.tick(5000);
  assert.deepEqual(cb.reasons(), ["poll"]);
});

test("reconnects with capped exponential backoff and jitter", () => {
  let random = 0;
  const pg = client({random: () => random, backoffInitial: 1000, backoffMax: 8000, pollDown: 0});
  pg.subscribe("a", () => {});
  const delays = [];
  for (let i = 0; i < 6; i++) {
    const before = FakeSocket.all.length;
    latest().drop();
    assert.equal(pg.state, "waiting");
    let waited = 0;
    while (FakeSocket.all.length === before) {
      mock.timers.tick(250);
      waited += 250;
    }
    delays.push(waited);
  }
  // Equal jitter with random() = 0: half of 1, 2, 4, 8, 8, 8 seconds.
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 4000, 4000]);

  random = 1; // the other end of the jitter range: the full capped delay
  latest().drop();
  const before = FakeSocket.all.length;
  mock.timers.tick(7999);
  assert.equal(FakeSocket.all.length, before);
  mock.timers.tick(1);
  assert.equal(FakeSocket.all.length, before + 1);

  latest().open(); // success resets the backoff
  latest().drop();
  mock.timers.tick(1000);
  assert.equal(FakeSocket.all.length, before + 2);
});

test("after a reconnect every subscription is renewed and resyncs once", () => {
  const pg = client({throttle: 0});
  const a = recorder();
  const b = recorder();
  pg.subscribe("a", a);
  pg.subscribe("b", b, {token: "t"});
  latest().open();
  latest().confirmAll();
  assert.deepEqual(a.calls, []); // a fresh page does not resync

  latest().drop();
  mock.timers.tick(1000);
  latest().open();
  assert.deepEqual(latest().sent, [
    {type: "subscribe", channel: "a"},
    {type: "subscribe", channel: "b", token: "t"},
  ]);
  latest().confirmAll();
  assert.deepEqual(a.calls, [{channel: "a", reason: "resync", data: null, count: 1}]);
  assert.deepEqual(b.reasons(), ["resync"]);
});

test("a page that could not connect at first resyncs once it does", () => {
  const pg = client({pollDown: 0});
  const cb = recorder();
  pg.subscribe("a", cb);
  latest().drop(); // the first attempt failed
  mock.timers.tick(1000);
  latest().open();
  latest().confirmAll();
  assert.deepEqual(cb.reasons(), ["resync"]);
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

test("a socket that stops answering pings is replaced", () => {
  const pg = client({pingInterval: 1000, pongTimeout: 500});
  pg.subscribe("a", () => {});
  const socket = latest();
  socket.open();
  mock.timers.tick(1000);
  assert.deepEqual(socket.sent.at(-1), {type: "ping"});
  socket.deliver({type: "pong"});
  mock.timers.tick(1000);
  assert.deepEqual(socket.sent.at(-1), {type: "ping"});
  mock.timers.tick(500); // no pong this time
  assert.equal(socket.closed, 4000);
});

test("a server that cannot join a channel yet is asked again", () => {
  const pg = client({pollDown: 3000});
  const cb = recorder();
  pg.subscribe("a", cb);
  latest().open();
  latest().deliver({type: "error", code: "unavailable", message: "later", channel: "a"});
  mock.timers.tick(3000);
  assert.deepEqual(latest().sent.filter((f) => f.type === "subscribe").length, 2);
  latest().deliver({type: "subscribed", channel: "a"});
  mock.timers.tick(500); // the poll at 3 s opened a throttle window; resync trails it
  assert.deepEqual(cb.reasons(), ["poll", "resync"]);
});

test("bad arguments are clear errors", () => {
  const pg = client();
  assert.throws(() => pg.subscribe("has space", () => {}), /invalid channel name "has space"/);
  assert.throws(() => pg.subscribe("x".repeat(101), () => {}), /invalid channel name/);
  assert.throws(() => pg.subscribe("ok"), /needs a callback/);
  assert.equal(FakeSocket.all.length, 0);
});

test("a failing callback does not stop the others", () => {
  const pg = client();
  const good = recorder();
  const original = console.error;
  console.error = () => {};
  try {
    pg.subscribe("a", () => {
      throw new Error("page bug");
    });
    pg.subscribe("a", good);
    latest().open();
    latest().deliver({type: "message", channel: "a", id: "1", data: 1});
  } finally {
    console.error = original;
  }
  assert.equal(good.calls.length, 1);
});

test("relative urls follow the page's scheme and host", () => {
  globalThis.location = {protocol: "https:", host: "example.org"};
  try {
    createClient({WebSocket: FakeSocket}).subscribe("a", () => {});
    assert.equal(latest().url, "wss://example.org/ws/pushgateway/");
  } finally {
    delete globalThis.location;
  }
});

test("legacy realm mode speaks Faye: fallback transport, '/' + channel, resync after transport:up", async () => {
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
    const pg = createClient({transport: "faye", fayeUrl: "https://realm.example/bayeux", throttle: 0});
    const cb = recorder();
    const unsubscribe = pg.subscribe("comments-1", cb);
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    const [faye] = made;
    assert.equal(faye.url, "https://realm.example/bayeux");
    assert.deepEqual(faye.options, {transportMode: "fallback"});
    assert.deepEqual(Object.keys(faye.subscriptions), ["/comments-1"]);
    assert.equal(pg.state, "connected");

    faye.subscriptions["/comments-1"]({type: "message", channel: "comments-1", id: "9", data: {pk: "1"}});
    assert.deepEqual(cb.calls, [{channel: "comments-1", reason: "message", data: {pk: "1"}, count: 1}]);

    faye.handlers["transport:down"]();
    assert.equal(pg.state, "waiting");
    faye.handlers["transport:up"]();
    mock.timers.tick(1);
    assert.equal(pg.state, "connected");
    assert.deepEqual(cb.reasons(), ["message", "resync"]);

    unsubscribe();
    assert.deepEqual(Object.keys(faye.subscriptions), []);
    assert.equal(FakeSocket.all.length, 0); // no WebSocket in this mode
  } finally {
    delete globalThis.Faye;
  }
});

test("coming back online reconnects at once instead of waiting out the backoff", () => {
  const win = new EventTarget();
  const pg = client({window: win, backoffInitial: 30000, backoffMax: 30000});
  pg.subscribe("a", () => {});
  latest().drop();
  assert.equal(pg.state, "waiting");
  const before = FakeSocket.all.length;
  win.dispatchEvent(new Event("online"));
  assert.equal(FakeSocket.all.length, before + 1);
  assert.equal(pg.state, "connecting");
  mock.timers.tick(30000); // the cancelled backoff timer does not open a second socket
  assert.equal(FakeSocket.all.length, before + 1);
});
