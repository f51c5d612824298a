// The stream transport (Server-Sent Events over a POSTed fetch) and the choice between it and
// the WebSocket: fallback on a refused upgrade or on sockets that die young, session memory,
// WebSockets tried again later, re-opening with positions, close events, idle streams.
"use strict";
const {test, mock} = require("node:test");
const assert = require("node:assert/strict");
const {FACTS, _internals} = require("../../static/js/pushgateway.js");
const {createEventParser} = _internals;
const {FakeSocket, server, latest, settle, settleAll, client, recorder, quietly, useFakes} =
  require("./fakes.js");

useFakes();

const STREAM_URL = "/pushgateway/stream/";

// One streamed response: the test pushes SSE text into it; the client reads it.
class FakeStream {
  constructor(request, headers) {
    this.request = request; // {url, frames, signal}
    this.chunks = [];
    this.waiting = null;
    this.ended = false;
    this.headers = headers || {};
    if (request.signal) request.signal.addEventListener("abort", () => this.end(true));
  }
  response() {
    const reader = {read: () => this.read()};
    const headers = {get: (name) => this.headers[name] || null};
    return {ok: true, status: 200, headers, body: {getReader: () => reader}};
  }
  read() {
    if (this.chunks.length) return Promise.resolve(this.chunks.shift());
    if (this.ended) return this.ended === true ? Promise.reject(new Error("aborted")) : done();
    return new Promise((resolve, reject) => (this.waiting = {resolve, reject}));
  }
  push(text) {
    const chunk = {done: false, value: new TextEncoder().encode(text)};
    if (this.waiting) this.waiting.resolve(chunk);
    else this.chunks.push(chunk);
    this.waiting = null;
  }
  end(aborted) {
    this.ended = aborted ? true : "done";
    if (!this.waiting) return;
    if (aborted) this.waiting.reject(new Error("aborted"));
    else this.waiting.resolve({done: true});
    this.waiting = null;
  }
  frame(frame) {
    this.push(`data: ${JSON.stringify(frame)}\n\n`);
  }
  subscribes() {
    return this.request.frames.filter((frame) => frame.type === "subscribe");
  }
  // Answer every subscribe as the server does: the position, and whether `since` differs.
  confirmAll() {
    for (const {channel, since} of this.subscribes()) {
      const position = server.position(channel);
      const stale = !since || since.epoch !== position.epoch || since.seq !== position.seq;
      this.frame({type: "subscribed", channel, position, stale});
    }
  }
  message(channel, data) {
    const position = server.publish(channel);
    this.frame({type: "message", channel, id: `m${++server.ids}`, data, position});
  }
}
const done = () => Promise.resolve({done: true});

// The fake server's stream endpoint beside its positions view; `streams` records each stream.
function streamingClient(options) {
  const streams = [];
  const storage = new Map();
  const sessionStorage = {
    getItem: (key) => (storage.has(key) ? storage.get(key) : null),
    setItem: (key, value) => storage.set(key, String(value)),
    removeItem: (key) => storage.delete(key),
  };
  const fetch = (url, init) => {
    if (url !== STREAM_URL) return server.fetch(url, init);
    const {frames} = JSON.parse(init.body);
    const stream = new FakeStream({url, frames, signal: init.signal}, streams.headers);
    streams.push(stream);
    return streams.refuse ? Promise.reject(new TypeError("Failed to fetch")) : Promise.resolve(stream.response());
  };
  const pg = client(Object.assign({transport: "auto", fetch, sessionStorage}, options));
  return {pg, streams, storage, sessionStorage, last: () => streams[streams.length - 1]};
}

// Ticks fake time in steps, letting promises settle between them.
async function pass(ms, step = 250) {
  for (let t = 0; t < ms; t += step) {
    mock.timers.tick(Math.min(step, ms - t));
    await settle();
  }
}

test("a refused upgrade moves to the stream: the same frames, positions and callbacks", async () => {
  const {pg, streams, storage, last} = streamingClient({positions: {a: server.position("a")}});
  const cb = recorder();
  pg.subscribe("a", cb);
  latest().drop(); // the upgrade fails at once, as behind a proxy that refuses it
  await pass(1000);
  assert.equal(streams.length, 1);
  assert.equal(pg.transport, "stream");
  assert.deepEqual(last().subscribes(), [{type: "subscribe", channel: "a", since: {epoch: "", seq: 0}}]);
  last().confirmAll();
  await settle();
  assert.equal(pg.state, "connected");
  last().message("a", {pk: "1"});
  await settle();
  assert.deepEqual(cb.calls.map((c) => [c.reason, c.data]), [["message", {pk: "1"}]]);
  assert.ok(JSON.parse(storage.get("pushgateway:transport")).retryAt > Date.now());
  // One socket beside the stream tells a proxy from a server that was down: refused too.
  assert.equal(FakeSocket.all.length, 2);
  latest().drop();
  await pass(5000);
  assert.equal(pg.transport, "stream");
  assert.equal(FakeSocket.all.length, 2);
  // Tokens travel in the POST body, never in the URL.
  assert.equal(last().request.url, STREAM_URL);
});

// The current socket opens, lives 2 s and dies; 3 s pass.
async function dieYoung() {
  latest().open();
  await pass(2000);
  latest().drop();
  await pass(3000);
}

test("sockets that open and die before stableAfter twice in a row move to the stream", async () => {
  const {pg, streams} = streamingClient({stableAfter: 10000});
  pg.subscribe("a", () => {});
  await dieYoung();
  assert.equal(FakeSocket.all.length, 2);
  assert.equal(pg.transport, "websocket"); // once is not yet a pattern
  await dieYoung();
  assert.equal(streams.length, 1);
  assert.equal(pg.transport, "stream");
});

test("a socket that stays up keeps the WebSocket, and one young death is forgiven", async () => {
  const {pg, streams} = streamingClient({stableAfter: 10000});
  pg.subscribe("a", () => {});
  await dieYoung();
  latest().open();
  await pass(10000); // stayed up: the count starts over
  latest().drop();
  await pass(3000);
  await dieYoung();
  assert.equal(streams.length, 0);
  assert.equal(pg.transport, "websocket");
});

test("a server that is down is not mistaken for a proxy: the attempts alternate", async () => {
  const {pg, streams} = streamingClient({backoffMax: 1000});
  streams.refuse = true;
  pg.subscribe("a", () => {});
  latest().drop();
  await pass(1500);
  assert.equal(streams.length, 1);
  await pass(1500);
  assert.equal(FakeSocket.all.length, 2); // the stream did not open either: WebSocket again
  assert.equal(pg.transport, "websocket");
});

test("a subscribe re-opens the stream with every channel's position; nothing is lost between", async () => {
  const {pg, streams, last} = streamingClient({positions: {a: server.position("a")}});
  const a = recorder();
  const b = recorder();
  pg.subscribe("a", a);
  latest().drop();
  await pass(1000);
  last().confirmAll();
  last().message("a", 1);
  await settle();
  const first = last();
  server.publish("b"); // b moved before the page subscribed
  pg.subscribe("b", b);
  await pass(250);
  assert.equal(streams.length, 2);
  assert.equal(first.ended, true); // the old stream was let go
  assert.deepEqual(last().subscribes().map((f) => [f.channel, f.since]), [
    ["a", server.position("a")],
    ["b", undefined],
  ]);
  server.publish("a"); // published while no stream was open
  last().confirmAll();
  await pass(1000);
  assert.deepEqual(a.reasons(), ["message", "resync"]); // the missed hint: one resync
  assert.deepEqual(b.reasons(), ["resync"]); // no rendered position: it refetches once
  // Unsubscribing costs nothing: no new stream; its frames are ignored.
  const before = streams.length;
  pg.subscribe("c", () => {})();
  await pass(250);
  assert.ok(streams.length <= before + 1);
});

test("a close event is the server's close code; a silent stream is dead after streamIdle", async () => {
  const {pg, streams, last} = streamingClient({restartDelay: 1000, streamIdle: 30000});
  pg.subscribe("a", () => {});
  latest().drop();
  await pass(1000);
  last().confirmAll();
  await settle();
  last().push(`event: close\ndata: {"code":${FACTS.closeCodes.SERVICE_RESTART}}\n\n`);
  await settle();
  assert.equal(pg.state, "waiting");
  await pass(1000); // a restart: back within restartDelay
  assert.equal(streams.length, 2);
  last().confirmAll();
  await settle();
  for (let i = 0; i < 4; i++) {
    await pass(15000);
    last().push(":\n\n"); // keep-alive comments keep it alive
  }
  assert.equal(streams.length, 2);
  await pass(29000); // then silence...
  assert.equal(streams.length, 2);
  await pass(3000); // ...past streamIdle: dead, and a new stream opens
  assert.equal(streams.length, 3);
});

test("a server that was down and is back goes back to WebSockets at once, not after a retry", async () => {
  const {pg, storage, last} = streamingClient();
  pg.subscribe("a", () => {});
  latest().drop(); // the server is down: its upgrade fails...
  await pass(1000);
  last().confirmAll(); // ...and it is back by the stream's turn
  await settle();
  assert.equal(pg.transport, "stream");
  latest().open(); // the socket beside the stream opens: no proxy in the way
  await pass(3000); // the stream closes as for a restart: back within restartDelay
  assert.equal(pg.transport, "websocket");
  assert.equal(last().ended, true);
  assert.equal(storage.get("pushgateway:transport"), undefined);
  latest().open();
  latest().confirmAll();
  assert.equal(pg.state, "connected");
});

test("WebSockets are tried again after websocketRetry; a retry that fails doubles the wait", async () => {
  const {pg, streams, storage, sessionStorage, last} = streamingClient({websocketRetry: 60000});
  pg.subscribe("a", () => {});
  latest().drop();
  await pass(1000);
  last().confirmAll();
  await settle();
  latest().drop(); // the socket beside the stream is refused too
  const sockets = FakeSocket.all.length;
  await pass(63000); // within restartDelay of websocketRetry
  assert.equal(FakeSocket.all.length, sockets + 1); // tried again
  assert.equal(pg.transport, "websocket");
  latest().drop(); // refused again: back to the stream, for twice as long
  await pass(1000);
  assert.equal(pg.transport, "stream");
  last().confirmAll();
  await settle();
  latest().drop(); // and its probe
  const saved = JSON.parse(storage.get("pushgateway:transport"));
  assert.equal(saved.retryAfter, 120000);
  // Another page of the session starts on the stream at once, without a socket first.
  const before = FakeSocket.all.length;
  const other = streamingClient({sessionStorage});
  other.pg.subscribe("a", () => {});
  await pass(250);
  assert.equal(other.pg.transport, "stream");
  assert.equal(other.streams.length, 1);
  assert.equal(FakeSocket.all.length, before);
  other.pg.subscribe("a", () => {});
  await pass(60000);
  assert.equal(pg.transport, "stream"); // not yet: 120 s this time
  await pass(63000);
  assert.equal(pg.transport, "websocket");
  latest().open(); // this time the socket stays up: the session forgets the move
  await pass(10000);
  assert.equal(storage.get("pushgateway:transport"), undefined);
  assert.ok(streams.length >= 2);
});

test("behind a GRIP proxy the page checks positions once after the stream's subscriptions", async () => {
  const {pg, streams, last} = streamingClient({positions: {a: server.position("a")}});
  streams.headers = {[FACTS.streamRecheckHeader]: "1"};
  const cb = recorder();
  pg.subscribe("a", cb);
  latest().drop();
  await pass(1000);
  last().confirmAll();
  await settle();
  server.publish("a"); // lost while the proxy took the channel over
  server.requests = [];
  await pass(2000);
  assert.deepEqual(server.asked(), [["a"]]);
  assert.deepEqual(cb.reasons(), ["resync"]);
});

test("the event parser takes events split anywhere, CRLF lines, comments and multi-line data", () => {
  const events = [];
  const feed = createEventParser((name, data) => events.push([name, data]));
  feed(":\n\nda");
  feed('ta: {"a":1}\n');
  feed("\nevent: close\r\ndata: x\r\ndata: y\r\n\r\n");
  assert.deepEqual(events, [["message", '{"a":1}'], ["close", "x\ny"]]);
});

test("the event parser takes several events from one chunk, in order", () => {
  const events = [];
  const feed = createEventParser((name, data) => events.push([name, data]));
  feed('data: {"n":0}\n\ndata: {"n":1}\n\ndata: {"n":2}\n\n');
  assert.deepEqual(events, [0, 1, 2].map((n) => ["message", `{"n":${n}}`]));
});

test("a stream that is refused or not a stream is a failed attempt, with a warning-free backoff", async () => {
  const {pg} = streamingClient({transport: "stream", backoffMax: 1000});
  const calls = [];
  pg.configure({fetch: (url) => (calls.push(url), Promise.resolve({ok: false, status: 400}))});
  pg.subscribe("a", () => {});
  await quietly("warn", () => pass(3000));
  assert.ok(calls.filter((url) => url === STREAM_URL).length >= 2);
  assert.notEqual(pg.state, "connected");
});

// Tabs of one fake browser sharing the stream; `streams` records each stream opened.
function streamTabs() {
  const {FakeBrowser} = require("./fakes.js");
  const browser = new FakeBrowser();
  const streams = [];
  const fetch = (url, init) => {
    if (url !== STREAM_URL) return server.fetch(url, init);
    const stream = new FakeStream({url, frames: JSON.parse(init.body).frames, signal: init.signal});
    streams.push(stream);
    return Promise.resolve(stream.response());
  };
  const newTab = (options) => {
    const fakes = browser.tab();
    const sharing = {BroadcastChannel: fakes.BroadcastChannel, locks: fakes.locks};
    return client(Object.assign({transport: "stream", share: true, fetch}, sharing, options));
  };
  return {streams, newTab};
}

test("tabs share one stream: the leader's stream carries a follower's channel to it", async () => {
  const {streams, newTab} = streamTabs();
  const tab = (channel) => {
    const pg = newTab({positions: {[channel]: server.position(channel)}});
    const cb = recorder();
    pg.subscribe(channel, cb);
    return {pg, cb};
  };
  const a = tab("a");
  await settleAll();
  await pass(250);
  streams[0].confirmAll();
  await settleAll();
  assert.equal(a.pg.sharing, "leader");
  const b = tab("b");
  await settleAll();
  await pass(250);
  await settleAll();
  assert.equal(b.pg.sharing, "follower");
  const last = streams[streams.length - 1];
  assert.deepEqual(last.subscribes().map((f) => f.channel).sort(), ["a", "b"]);
  last.confirmAll();
  await settleAll();
  last.message("b", {n: 1});
  await settleAll();
  await pass(500);
  assert.deepEqual(b.cb.calls.map((c) => [c.reason, c.data]), [["message", {n: 1}]]);
  assert.deepEqual(a.cb.reasons(), []);
  assert.ok(streams.length <= 3, `${streams.length} streams`); // no loop of re-opens
});

test("a follower's private channel does not ride on a shared stream: it goes its own way", async () => {
  const {streams, newTab} = streamTabs();
  const channel = "private-x";
  const tab = (token) => {
    const pg = newTab({positions: {}});
    const callback = recorder();
    pg.subscribe(channel, callback, {token});
    return {pg, callback};
  };
  // The server answers each subscribe by its own token.
  const answer = (stream) => {
    for (const frame of stream.subscribes()) {
      if (frame.token !== "good") stream.frame({type: "error", code: "forbidden", channel});
      else stream.frame({type: "subscribed", channel, position: server.position(channel)});
    }
  };
  const a = tab("good");
  await settleAll();
  await pass(250);
  answer(streams[0]);
  await settleAll();
  const b = tab("bad");
  await settleAll();
  await pass(250);
  await settleAll();
  assert.equal(a.pg.sharing, "leader");
  assert.equal(b.pg.sharing, null); // told to go its own way
  const own = streams[streams.length - 1];
  assert.deepEqual(own.subscribes().map((frame) => frame.token), ["bad"]);
  answer(own);
  await settleAll();
  streams[0].message(channel, {secret: 1});
  await settleAll();
  await pass(1000);
  assert.ok(a.callback.calls.some((call) => call.reason === "message"), "the leader's hint");
  assert.ok(b.callback.calls.every((call) => call.reason !== "message"), "no hint without a token");
});
