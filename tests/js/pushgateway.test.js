// The browser module under node's test runner: fake timers and clock, a fake WebSocket and a
// fake server that keeps stream positions and answers the positions view.
"use strict";
const {test, beforeEach, afterEach, mock} = require("node:test");
const assert = require("node:assert/strict");
const {createClient} = require("../../static/js/pushgateway.js");

const START = {epoch: "", seq: 0};

// Stream positions as the server keeps them, and the positions view over them.
class FakeServer {
  constructor() {
    this.positions = {};
    this.requests = [];
    this.down = false;
    this.epochs = 0;
  }
  position(channel) {
    return this.positions[channel] || START;
  }
  publish(channel) {
    const p = this.position(channel);
    const next = {epoch: p.epoch || `e${++this.epochs}`, seq: p.seq + 1};
    this.positions[channel] = next;
    return next;
  }
  fetch(url) {
    this.requests.push(url);
    if (this.down) return Promise.reject(new TypeError("Failed to fetch"));
    const positions = {};
    for (const item of new URL(url, "http://test").searchParams.getAll("c")) {
      const name = item.split(":")[0];
      positions[name] = this.position(name);
    }
    return Promise.resolve({ok: true, json: () => Promise.resolve({positions, errors: {}})});
  }
}

let server;

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
  drop(code = 1006) {
    this.onclose({code});
  }
  subscribes() {
    return this.sent.filter((frame) => frame.type === "subscribe");
  }
  // Answer every subscribe as the real server does: the position, and whether `since` differs.
  confirmAll() {
    for (const frame of this.subscribes()) {
      const position = server.position(frame.channel);
      const since = frame.since;
      const stale = !since || since.epoch !== position.epoch || since.seq !== position.seq;
      this.deliver({type: "subscribed", channel: frame.channel, position, stale});
    }
  }
  // Publish on the fake server and deliver the hint on this socket.
  message(channel, data) {
    const position = server.publish(channel);
    this.deliver({type: "message", channel, id: String(position.seq), data, position});
    return position;
  }
}

const latest = () => FakeSocket.all[FakeSocket.all.length - 1];
const settle = () => new Promise((resolve) => setImmediate(resolve));

function client(options) {
  return createClient(
    Object.assign(
      {
        url: "ws://test/ws/pushgateway/",
        positionsUrl: "/pushgateway/positions/",
        WebSocket: FakeSocket,
        fetch: (url) => server.fetch(url),
        random: () => 0.5,
      },
      options
    )
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
  const pg = client(Object.assign({positions: {[channel]: server.position(channel)}}, options));
  const cb = recorder();
  pg.subscribe(channel, cb, subscribeOptions);
  latest().open();
  latest().confirmAll();
  return {pg, cb};
}

beforeEach(() => {
  FakeSocket.all = [];
  server = new FakeServer();
  mock.timers.enable({apis: ["setTimeout", "Date"], now: 1_000_000});
});
afterEach(() => mock.timers.reset());

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

test("a rendered page that missed nothing makes no callback; one that did resyncs once", () => {
  server.publish("quiet");
  server.publish("busy");
  const rendered = {quiet: server.position("quiet"), busy: server.position("busy")};
  server.publish("busy"); // saved after the render, before the subscription
  const pg = client({positions: rendered});
  const quiet = recorder();
  const busy = recorder();
  pg.subscribe("quiet", quiet);
  pg.subscribe("busy", busy);
  latest().open();
  latest().confirmAll();
  mock.timers.tick(60000);
  assert.deepEqual(quiet.calls, []);
  assert.deepEqual(busy.calls, [{channel: "busy", reason: "resync", data: null, count: 1}]);
});

test("a page rendered without a position resyncs once on its first confirmation", () => {
  const pg = client();
  const cb = recorder();
  pg.subscribe("a", cb);
  latest().open();
  latest().confirmAll();
  assert.deepEqual(cb.reasons(), ["resync"]);
  mock.timers.tick(60000);
  assert.deepEqual(cb.reasons(), ["resync"]);
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

test("positions: a hint seen already is dropped, a gap or a new epoch is a resync", () => {
  const {cb} = subscribed("a", {throttle: 0});
  const first = latest().message("a", 1);
  latest().deliver({type: "message", channel: "a", id: "again", data: 1, position: first});
  mock.timers.tick(1);
  assert.deepEqual(cb.reasons(), ["message"]);

  server.publish("a"); // lost on the way
  latest().message("a", 3);
  mock.timers.tick(1);
  assert.deepEqual(cb.calls.at(-1), {channel: "a", reason: "resync", data: 3, count: 1});

  // The server's store forgot the channel: a new epoch cannot be compared.
  server.positions.a = START;
  latest().message("a", 4);
  mock.timers.tick(1);
  assert.deepEqual(cb.reasons(), ["message", "resync", "resync"]);
  latest().message("a", 5);
  mock.timers.tick(1);
  assert.deepEqual(cb.reasons(), ["message", "resync", "resync", "message"]);
});

test("throttle fires on the leading and trailing edge with the latest hint and a count", () => {
  const {cb} = subscribed("a");
  for (let i = 1; i <= 4; i++) latest().message("a", i);
  assert.deepEqual(cb.calls, [{channel: "a", reason: "message", data: 1, count: 1}]);
  mock.timers.tick(499);
  assert.equal(cb.calls.length, 1);
  mock.timers.tick(1);
  assert.deepEqual(cb.calls[1], {channel: "a", reason: "message", data: 4, count: 3});
  mock.timers.tick(500); // quiet window: nothing more
  assert.equal(cb.calls.length, 2);
  latest().message("a", 5);
  assert.deepEqual(cb.calls[2], {channel: "a", reason: "message", data: 5, count: 1});
});

test("the strongest reason of a throttle window wins", () => {
  const {cb} = subscribed("a");
  latest().message("a", 1); // leading edge
  server.publish("a"); // lost
  latest().message("a", 3); // a gap: resync
  latest().message("a", 4); // a plain message after it must not hide the resync
  mock.timers.tick(500);
  assert.deepEqual(cb.calls, [
    {channel: "a", reason: "message", data: 1, count: 1},
    {channel: "a", reason: "resync", data: 4, count: 2},
  ]);
});

test("per-subscription throttle option", () => {
  const {cb} = subscribed("a", {}, {throttle: 2000});
  latest().message("a", 1);
  latest().message("a", 2);
  mock.timers.tick(1999);
  assert.equal(cb.calls.length, 1);
  mock.timers.tick(1);
  assert.equal(cb.calls.length, 2);
});

test("without a socket, one request per interval checks every channel; only moved ones call back", async () => {
  const names = ["a", "b", "c"];
  const pg = client({positions: Object.fromEntries(names.map((n) => [n, START]))});
  const calls = Object.fromEntries(names.map((n) => [n, recorder()]));
  for (const n of names) pg.subscribe(n, calls[n]);
  // The WebSocket never opens (a proxy refuses it). Nothing changes for a minute:
  for (let t = 0; t < 60000; t += 5000) {
    mock.timers.tick(5000);
    await settle();
  }
  assert.equal(server.requests.length, 12); // one small GET per 5 s for all three
  assert.deepEqual(server.requests[0], "/pushgateway/positions/?c=a&c=b&c=c");
  assert.deepEqual([...calls.a.calls, ...calls.b.calls, ...calls.c.calls], []); // no refetch

  server.publish("b");
  mock.timers.tick(5000);
  await settle();
  assert.deepEqual(calls.b.reasons(), ["poll"]);
  assert.deepEqual([...calls.a.calls, ...calls.c.calls], []);
  mock.timers.tick(5000);
  await settle();
  assert.deepEqual(calls.b.reasons(), ["poll"]); // told once per change
});

test("when positions cannot be had, polls call back blindly as before", async () => {
  server.down = true;
  const pg = client({positions: {a: START}});
  const cb = recorder();
  pg.subscribe("a", cb);
  const warn = console.warn;
  console.warn = () => {};
  try {
    mock.timers.tick(5000);
    await settle();
  } finally {
    console.warn = warn;
  }
  assert.deepEqual(cb.reasons(), ["poll"]);

  const blind = client({positionsUrl: null});
  const other = recorder();
  blind.subscribe("b", other);
  mock.timers.tick(5000);
  await settle();
  assert.deepEqual(other.reasons(), ["poll"]);
});

test("checks every 5 s while push is down and every 5 min while it is up", async () => {
  const {pg} = subscribed("a");
  const before = server.requests.length;
  mock.timers.tick(299999);
  await settle();
  assert.equal(server.requests.length, before);
  mock.timers.tick(1);
  await settle();
  assert.equal(server.requests.length, before + 1);

  latest().drop(); // down again: back to 5 s
  assert.equal(pg.state, "waiting");
  mock.timers.tick(5000);
  await settle();
  assert.equal(server.requests.length, before + 2);
});

test("a page over the subscription limit polls the refused channels: no loop, one callback each", async () => {
  const pg = client({throttle: 0});
  const cbs = [];
  for (let i = 0; i < 130; i++) {
    const cb = recorder();
    cbs.push(cb);
    pg.subscribe(`c${i}`, cb);
  }
  latest().open();
  const socket = latest();
  for (const frame of socket.subscribes()) {
    const n = Number(frame.channel.slice(1));
    if (n < 100) {
      socket.deliver({type: "subscribed", channel: frame.channel, position: START, stale: true});
    } else {
      socket.deliver({type: "error", code: "too_many_subscriptions", message: "max 100", channel: frame.channel});
    }
  }
  const warn = console.warn;
  console.warn = () => {};
  try {
    for (let t = 0; t < 25000; t += 1000) {
      mock.timers.tick(1000);
      await settle();
    }
  } finally {
    console.warn = warn;
  }
  assert.equal(FakeSocket.all.length, 1); // never closed, never reopened
  assert.equal(socket.subscribes().length, 130); // the refused ones were not asked again
  assert.ok(cbs.every((cb) => cb.calls.length === 1), "one callback per channel");
  assert.ok(server.requests.every((url) => url.includes("c=c100") && !url.includes("c=c99&")));
});

test("reconnects with capped exponential backoff and jitter; resets only after a stable connection", () => {
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
  latest().open(); // opens, but is closed again at once: no reset
  latest().drop();
  const before = FakeSocket.all.length;
  mock.timers.tick(7999);
  assert.equal(FakeSocket.all.length, before);
  mock.timers.tick(1);
  assert.equal(FakeSocket.all.length, before + 1);

  latest().open();
  mock.timers.tick(10000); // stayed up: the backoff starts over
  latest().drop();
  mock.timers.tick(1000);
  assert.equal(FakeSocket.all.length, before + 2);
});

test("a policy close backs off long instead of reconnecting at once", () => {
  const pg = client({backoffInitial: 1000, backoffMax: 30000, pollDown: 0, random: () => 0});
  pg.subscribe("a", () => {});
  latest().open();
  const warn = console.warn;
  console.warn = () => {};
  try {
    latest().drop(4008);
  } finally {
    console.warn = warn;
  }
  const before = FakeSocket.all.length;
  mock.timers.tick(14999);
  assert.equal(FakeSocket.all.length, before);
  mock.timers.tick(1);
  assert.equal(FakeSocket.all.length, before + 1);
  assert.equal(pg.state, "connecting");
});

test("after a reconnect only the channels that moved meanwhile resync", () => {
  const pg = client({throttle: 0, positions: {a: START, b: START, c: START}});
  const calls = {a: recorder(), b: recorder(), c: recorder()};
  pg.subscribe("a", calls.a);
  pg.subscribe("b", calls.b, {token: "t"});
  pg.subscribe("c", calls.c);
  latest().open();
  latest().confirmAll();
  latest().message("a", 1);

  latest().drop();
  server.publish("c"); // while the page was away
  mock.timers.tick(1000);
  latest().open();
  assert.deepEqual(latest().sent, [
    {type: "subscribe", channel: "a", since: {epoch: "e1", seq: 1}},
    {type: "subscribe", channel: "b", since: START, token: "t"},
    {type: "subscribe", channel: "c", since: START},
  ]);
  latest().confirmAll();
  assert.deepEqual(calls.a.reasons(), ["message"]);
  assert.deepEqual(calls.b.reasons(), []);
  assert.deepEqual(calls.c.reasons(), ["resync"]);
});

test("after a very long absence a page cannot trust an idle channel's position", () => {
  const pg = client({positions: {a: START}, positionTtl: 60000, pollDown: 0});
  const cb = recorder();
  pg.subscribe("a", cb);
  latest().open();
  latest().confirmAll();
  latest().drop();
  mock.timers.tick(120000); // the laptop slept; the server may have forgotten the channel
  latest().open();
  assert.deepEqual(latest().subscribes(), [{type: "subscribe", channel: "a"}]);
  latest().confirmAll();
  assert.deepEqual(cb.reasons(), ["resync"]);
});

test("a resync from the server waits for hints on their way, and is dropped when they arrive", () => {
  const {cb} = subscribed("a", {throttle: 0});
  const next = {epoch: "e1", seq: 1};
  latest().deliver({type: "resync", channel: "a", position: next}); // overtook the hint
  latest().message("a", "the hint");
  mock.timers.tick(1000);
  assert.deepEqual(cb.reasons(), ["message"]);

  server.publish("a"); // really lost
  latest().deliver({type: "resync", channel: "a", position: server.position("a")});
  mock.timers.tick(499);
  assert.deepEqual(cb.reasons(), ["message"]);
  mock.timers.tick(1);
  assert.deepEqual(cb.reasons(), ["message", "resync"]);
  latest().deliver({type: "resync", channel: "a", position: server.position("a")}); // known
  mock.timers.tick(1000);
  assert.deepEqual(cb.reasons(), ["message", "resync"]);
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

test("pings soon after subscribing, then every interval; a socket that stops answering is replaced", () => {
  const pg = client({pingInterval: 10000, pongTimeout: 500, checkAfterSubscribe: 1500});
  pg.subscribe("a", () => {});
  const socket = latest();
  socket.open();
  socket.confirmAll();
  mock.timers.tick(1500); // early: a proxied server checks positions on it
  assert.deepEqual(socket.sent.at(-1), {type: "ping"});
  socket.deliver({type: "pong"});
  mock.timers.tick(9999);
  assert.equal(socket.sent.filter((f) => f.type === "ping").length, 1);
  mock.timers.tick(1);
  assert.deepEqual(socket.sent.at(-1), {type: "ping"});
  mock.timers.tick(500); // no pong this time
  assert.equal(socket.closed, 4000);
});

test("a server that cannot join a channel yet is asked again", () => {
  const pg = client({pollDown: 3000, positions: {a: START}, positionsUrl: null});
  const cb = recorder();
  pg.subscribe("a", cb);
  latest().open();
  const warn = console.warn;
  console.warn = () => {};
  try {
    latest().deliver({type: "error", code: "unavailable", message: "later", channel: "a"});
  } finally {
    console.warn = warn;
  }
  mock.timers.tick(3000);
  assert.equal(latest().subscribes().length, 2);
  latest().deliver({type: "subscribed", channel: "a", position: START, stale: false});
  mock.timers.tick(500);
  assert.deepEqual(cb.reasons(), ["poll"]); // polled blindly meanwhile; nothing was missed
});

test("bad arguments are clear errors", () => {
  const pg = client();
  assert.throws(() => pg.subscribe("has space", () => {}), /invalid channel name "has space"/);
  assert.throws(() => pg.subscribe("x".repeat(101), () => {}), /invalid channel name/);
  assert.throws(() => pg.subscribe("ok"), /needs a callback/);
  assert.equal(FakeSocket.all.length, 0);
});

test("frames that are not what they claim are ignored", () => {
  const {cb} = subscribed("a", {throttle: 0});
  const warn = console.warn;
  console.warn = () => {};
  try {
    for (const text of ["null", "[]", "7", "{", '{"type":"message"}']) {
      latest().onmessage({data: text});
    }
    latest().deliver({type: "subscribed", channel: "nope", position: START});
  } finally {
    console.warn = warn;
  }
  assert.deepEqual(cb.calls, []);
});

test("a failing callback does not stop the others", () => {
  const pg = client({positions: {a: START}});
  const good = recorder();
  const original = console.error;
  console.error = () => {};
  try {
    pg.subscribe("a", () => {
      throw new Error("page bug");
    });
    pg.subscribe("a", good);
    latest().open();
    latest().confirmAll();
    latest().message("a", 1);
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

test("a refused private token is renewed once through the getToken hook", async () => {
  const asked = [];
  const pg = client({positions: {"private-a": START}});
  const cb = recorder();
  pg.subscribe("private-a", cb, {
    token: "old",
    getToken: (channel) => {
      asked.push(channel);
      return Promise.resolve(asked.length === 1 ? "fresh" : "fresh");
    },
  });
  latest().open();
  const warn = console.warn;
  console.warn = () => {};
  try {
    latest().deliver({type: "error", code: "forbidden", message: "expired", channel: "private-a"});
    await settle();
    assert.deepEqual(asked, ["private-a"]);
    assert.deepEqual(latest().subscribes().at(-1), {
      type: "subscribe",
      channel: "private-a",
      since: START,
      token: "fresh",
    });
    // Refused again with the fresh token: the hook is asked again, but the same token is not
    // sent twice, so a page whose user lost access does not loop.
    latest().deliver({type: "error", code: "forbidden", message: "no", channel: "private-a"});
    await settle();
    assert.equal(asked.length, 2);
    assert.equal(latest().subscribes().length, 2);
  } finally {
    console.warn = warn;
  }
  assert.deepEqual(cb.calls, []);
});

test("a hidden tab does not poll; shown again, one request checks what it skipped", async () => {
  const doc = new EventTarget();
  doc.visibilityState = "hidden";
  const win = new EventTarget();
  win.document = doc;
  const pg = client({window: win, positions: {a: START, b: START}});
  const a = recorder();
  const b = recorder();
  pg.subscribe("a", a);
  pg.subscribe("b", b);
  server.publish("a"); // while hidden: nobody would see the refetch
  for (let t = 0; t < 60000; t += 5000) {
    mock.timers.tick(5000);
    await settle();
  }
  assert.equal(server.requests.length, 0);
  assert.deepEqual(a.calls, []);

  doc.visibilityState = "visible";
  doc.dispatchEvent(new Event("visibilitychange"));
  await settle();
  assert.equal(server.requests.length, 1);
  assert.deepEqual(a.reasons(), ["poll"]);
  assert.deepEqual(b.calls, []);
});

test("hints caused by this page's own requests do not call it back", () => {
  const {pg, cb} = subscribed("a", {throttle: 0});
  const own = server.publish("a");
  latest().deliver({type: "message", channel: "a", id: "1", data: 1, position: own, client: pg.clientId});
  const other = server.publish("a");
  latest().deliver({type: "message", channel: "a", id: "2", data: 2, position: other, client: "someone"});
  mock.timers.tick(1);
  assert.deepEqual(cb.calls, [{channel: "a", reason: "message", data: 2, count: 1}]);

  server.publish("a"); // lost
  const mine = server.publish("a");
  latest().deliver({type: "message", channel: "a", id: "4", data: 4, position: mine, client: pg.clientId});
  mock.timers.tick(1);
  assert.deepEqual(cb.reasons(), ["message", "resync"]); // a gap before our own hint is news
});

test("a page can opt out of skipping its own hints", () => {
  const {pg, cb} = subscribed("a", {throttle: 0, ignoreOwn: false});
  const own = server.publish("a");
  latest().deliver({type: "message", channel: "a", id: "1", data: 1, position: own, client: pg.clientId});
  assert.deepEqual(cb.reasons(), ["message"]);
});

test("fetch says which page made the request; each client has its own id", async () => {
  const seen = [];
  const pg = client({fetch: (url, init) => seen.push([url, init.headers.get("X-PushGateway-Client")])});
  await pg.fetch("/comments/", {method: "POST", headers: {"X-CSRFToken": "t"}});
  assert.deepEqual(seen, [["/comments/", pg.clientId]]);
  assert.match(pg.clientId, /^[0-9a-f]{24}$/);
  assert.notEqual(client().clientId, pg.clientId);
});

test("the ES module entry exports the same API", async () => {
  const esm = await import("../../static/js/pushgateway.mjs");
  const cjs = require("../../static/js/pushgateway.js");
  assert.equal(esm.createClient, cjs.createClient);
  assert.equal(esm.default.createClient, cjs.createClient);
  assert.deepEqual(esm.DEFAULTS, cjs.DEFAULTS);
});

test("a subscribe refused for asking too fast is asked again when the server says", () => {
  const pg = client({positions: {a: START}, positionsUrl: null, pollDown: 0});
  const cb = recorder();
  pg.subscribe("a", cb);
  latest().open();
  const warn = console.warn;
  console.warn = () => {};
  try {
    latest().deliver({type: "error", code: "rate_limited", message: "slow down", channel: "a", retry_after: 2});
  } finally {
    console.warn = warn;
  }
  mock.timers.tick(1999);
  assert.equal(latest().subscribes().length, 1);
  mock.timers.tick(1);
  assert.equal(latest().subscribes().length, 2);
  latest().deliver({type: "subscribed", channel: "a", position: START, stale: false});
  assert.deepEqual(cb.calls, []);
  assert.equal(FakeSocket.all.length, 1);
});
