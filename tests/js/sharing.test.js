// Tabs of one origin share one connection: a leader tab (the holder of a Web Lock) holds the
// socket and forwards frames over a BroadcastChannel; each tab keeps its own positions,
// throttle, tokens and self-echo check. FakeBrowser gives each tab its bus and locks.
"use strict";
const {test, mock} = require("node:test");
const assert = require("node:assert/strict");
const {_internals} = require("../../static/js/pushgateway.js");
const {START, FakeSocket, FakeBrowser, settleAll, server, latest, client, fakeWindow, recorder,
  quietly, tagOf, useFakes} = require("./fakes.js");

useFakes();

// A tab of `browser` with a sharing client on the fakes.
function tab(browser, options) {
  const fakes = browser.tab();
  const pg = client(Object.assign(
    {share: true, BroadcastChannel: fakes.BroadcastChannel, locks: fakes.locks}, options));
  return {pg, tab: fakes};
}

// A tab subscribed to `channels` (rendered at `positions`, else where the server is now).
async function tabOn(browser, channels, positions = {}, subscribeOptions = {}, options = {}) {
  const rendered = Object.fromEntries(channels.map((c) => [c, positions[c] || server.position(c)]));
  const t = tab(browser, Object.assign({positions: rendered}, options));
  t.cb = recorder();
  for (const channel of channels) t.pg.subscribe(channel, t.cb, subscribeOptions[channel]);
  await settleAll();
  return t;
}

// Answers the subscribes `socket` has not had answered yet, as the server does.
function confirmNew(socket) {
  const frames = socket.subscribes();
  for (const frame of frames.slice(socket.answered || 0)) {
    const position = server.position(frame.channel);
    const since = frame.since;
    const stale = !since || since.epoch !== position.epoch || since.seq !== position.seq;
    socket.deliver({type: "subscribed", channel: frame.channel, position, stale});
  }
  socket.answered = frames.length;
}

async function openAndConfirm(socket) {
  socket.open();
  await settleAll();
  confirmNew(socket);
  await settleAll();
}

test("tabs share one socket; a follower subscribes through it with its own position and token", async () => {
  const browser = new FakeBrowser();
  server.publish("a");
  const a = await tabOn(browser, ["a"]);
  assert.equal(a.pg.sharing, "leader");
  await openAndConfirm(latest());
  const b = await tabOn(browser, ["a", "private-x"], {a: START}, {"private-x": {token: "tb"}});
  confirmNew(latest());
  await settleAll();
  assert.equal(FakeSocket.all.length, 1, "one socket for both tabs");
  assert.equal(b.pg.sharing, "follower");
  assert.equal(b.pg.state, "connected");
  assert.deepEqual(latest().subscribes(), [
    {type: "subscribe", channel: "a", since: {epoch: "e1", seq: 1}},
    {type: "subscribe", channel: "a", since: START},
    {type: "subscribe", channel: "private-x", token: "tb", since: START},
  ]);
  // Each answer went to the tab that asked: only b was behind on "a".
  assert.deepEqual(a.cb.reasons(), []);
  assert.deepEqual(b.cb.reasons(), ["resync"]);
  latest().message("a", {n: 1});
  latest().message("private-x", {n: 2});
  await settleAll();
  mock.timers.tick(1000); // b's throttle window of its resync ends
  assert.deepEqual(a.cb.calls.map((c) => [c.channel, c.reason]), [["a", "message"]]);
  assert.deepEqual(b.cb.calls.map((c) => [c.channel, c.reason]),
    [["a", "resync"], ["private-x", "message"], ["a", "message"]]);
});

test("each tab skips only the hints its own requests caused", async () => {
  const browser = new FakeBrowser();
  const a = await tabOn(browser, ["a"]);
  await openAndConfirm(latest());
  const b = await tabOn(browser, ["a"]);
  confirmNew(latest());
  await settleAll();
  const position = server.publish("a");
  const client = tagOf(b.pg.clientId);
  latest().deliver({type: "message", channel: "a", id: "m1", position, data: {}, client});
  await settleAll();
  assert.deepEqual(a.cb.reasons(), ["message"]);
  assert.deepEqual(b.cb.reasons(), []);
});

test("a tab whose token the server refuses hears nothing of the channel another tab keeps", async () => {
  const browser = new FakeBrowser();
  const a = await tabOn(browser, ["private-x"], {}, {"private-x": {token: "good"}});
  await openAndConfirm(latest());
  const getToken = () => null; // this tab's user lost access: no fresh token
  const b = await tabOn(browser, ["private-x"], {}, {"private-x": {token: "bad", getToken}});
  const refusal = {type: "error", code: "forbidden", message: "no", channel: "private-x"};
  await quietly("warn", async () => {
    latest().deliver(refusal); // the answer to b's subscribe
    await settleAll();
  });
  latest().message("private-x", {secret: 1});
  await settleAll();
  assert.deepEqual(a.cb.reasons(), ["message"]);
  assert.deepEqual(b.cb.calls, []);
  assert.equal(b.pg.sharing, "follower");
});

test("the leader's tab closing: the next tab opens a socket and every tab subscribes again", async () => {
  const browser = new FakeBrowser();
  const a = await tabOn(browser, ["a"]);
  await openAndConfirm(latest());
  const b = await tabOn(browser, ["a"]);
  const c = await tabOn(browser, ["a", "b"]);
  confirmNew(latest());
  await settleAll();
  const first = latest();
  a.tab.close(); // the tab is gone: nothing said, its lock released
  server.publish("a"); // published while no socket listens
  await settleAll();
  assert.equal(b.pg.sharing, "leader");
  assert.equal(FakeSocket.all.length, 2, "the new leader's socket");
  assert.notEqual(latest(), first);
  await openAndConfirm(latest());
  assert.deepEqual(latest().subscribes().map((f) => [f.channel, f.since]),
    [["a", START], ["a", START], ["b", START]]);
  assert.equal(c.pg.state, "connected");
  assert.equal(c.pg.sharing, "follower");
  // The gap healed where something changed, nothing where nothing did.
  assert.deepEqual(b.cb.reasons(), ["resync"]);
  assert.deepEqual(c.cb.calls.map((e) => [e.channel, e.reason]), [["a", "resync"]]);
  mock.timers.tick(1000);
  latest().message("b", {});
  await settleAll();
  assert.deepEqual(c.cb.calls.map((e) => [e.channel, e.reason]), [["a", "resync"], ["b", "message"]]);
  assert.equal(FakeSocket.all.length, 2);
});

test("a leader whose socket drops takes its followers along when it is back", async () => {
  const browser = new FakeBrowser();
  const a = await tabOn(browser, ["a"], {}, {}, {pollDown: 0});
  await openAndConfirm(latest());
  const b = await tabOn(browser, ["a"]);
  confirmNew(latest());
  await settleAll();
  latest().drop();
  await settleAll();
  assert.equal(a.pg.state, "waiting");
  assert.equal(b.pg.state, "waiting");
  server.publish("a");
  mock.timers.tick(1000); // a's backoff: a new socket
  assert.equal(FakeSocket.all.length, 2);
  await openAndConfirm(latest());
  assert.equal(b.pg.state, "connected");
  assert.equal(FakeSocket.all.length, 2, "the follower did not open its own");
  assert.deepEqual([a.cb.reasons(), b.cb.reasons()], [["resync"], ["resync"]]);
});

test("the server hears an unsubscribe only when no tab wants the channel any more", async () => {
  const browser = new FakeBrowser();
  const a = tab(browser, {});
  const offA = a.pg.subscribe("a", () => {});
  a.pg.subscribe("z", () => {});
  await settleAll();
  await openAndConfirm(latest());
  const b = tab(browser, {});
  const offB = b.pg.subscribe("a", () => {});
  b.pg.subscribe("y", () => {});
  await settleAll();
  confirmNew(latest());
  await settleAll();
  const unsubscribes = () => latest().sent.filter((f) => f.type === "unsubscribe").map((f) => f.channel);
  offB();
  await settleAll();
  assert.deepEqual(unsubscribes(), []);
  offA();
  await settleAll();
  assert.deepEqual(unsubscribes(), ["a"]);
});

test("a follower's tab leaving says bye: the leader drops the channels only it had", async () => {
  const browser = new FakeBrowser();
  const a = tab(browser, {});
  a.pg.subscribe("a", () => {});
  await settleAll();
  await openAndConfirm(latest());
  const win = fakeWindow();
  const b = tab(browser, {window: win});
  b.pg.subscribe("a", () => {});
  b.pg.subscribe("y", () => {});
  await settleAll();
  confirmNew(latest());
  win.dispatchEvent(new Event("pagehide"));
  b.tab.close();
  await settleAll();
  assert.deepEqual(latest().sent.filter((f) => f.type === "unsubscribe"), [
    {type: "unsubscribe", channel: "y"},
  ]);
});

test("a follower's tab gone without a word: the leader leaves its channels at the next sweep", async () => {
  const browser = new FakeBrowser();
  const a = tab(browser, {pingInterval: 25000});
  a.pg.subscribe("a", () => {});
  await settleAll();
  await openAndConfirm(latest());
  const b = tab(browser, {});
  b.pg.subscribe("y", () => {});
  await settleAll();
  confirmNew(latest());
  await settleAll();
  b.tab.close(); // no pagehide: the process died
  const unsubscribes = () => latest().sent.filter((f) => f.type === "unsubscribe");
  mock.timers.tick(24000);
  await settleAll();
  assert.deepEqual(unsubscribes(), []);
  mock.timers.tick(1000);
  await settleAll();
  assert.deepEqual(unsubscribes(), [{type: "unsubscribe", channel: "y"}]);
  assert.equal(a.pg.sharing, "leader");
});

test("the leader's last unsubscribe hands the connection to another tab", async () => {
  const browser = new FakeBrowser();
  const a = tab(browser, {});
  const off = a.pg.subscribe("a", () => {});
  await settleAll();
  await openAndConfirm(latest());
  const b = await tabOn(browser, ["b"]);
  confirmNew(latest());
  await settleAll();
  const first = latest();
  off();
  await settleAll();
  assert.equal(first.closed, 1000);
  assert.equal([a.pg.state, a.pg.sharing].join(), "idle,");
  assert.equal(b.pg.sharing, "leader");
  await openAndConfirm(latest());
  assert.equal(b.pg.state, "connected");
  assert.deepEqual(latest().subscribes().map((f) => f.channel), ["b"]);
});

test("a follower refused for the shared connection's limit opens a connection of its own", async () => {
  const browser = new FakeBrowser();
  await tabOn(browser, ["a"]);
  await openAndConfirm(latest());
  const b = await tabOn(browser, ["b"]);
  const shared = latest();
  const refusal = {type: "error", code: "too_many_subscriptions", message: "at most 1", channel: "b"};
  shared.deliver(refusal);
  await settleAll();
  assert.equal(FakeSocket.all.length, 2);
  assert.equal(b.pg.sharing, null);
  latest().open();
  assert.deepEqual(latest().subscribes().map((f) => f.channel), ["b"]);
  assert.equal(b.pg.state, "connected");
  await settleAll();
  // The shared connection never had "b" (refused): nothing to leave there.
  assert.deepEqual(shared.sent.filter((f) => f.type === "unsubscribe"), []);
  assert.equal(FakeSocket.all.length, 2);
});

test("a page that cannot share, or is told not to, has a connection of its own", async () => {
  const browser = new FakeBrowser();
  const own = [
    tab(browser, {share: false}),
    tab(browser, {share: false}),
    client({share: true, BroadcastChannel: browser.tab().BroadcastChannel, locks: undefined}),
  ];
  if (globalThis.navigator && globalThis.navigator.locks) own.pop(); // this node has Web Locks
  for (const t of own) (t.pg || t).subscribe("a", () => {});
  await settleAll();
  assert.equal(FakeSocket.all.length, own.length);
  assert.deepEqual(own.map((t) => (t.pg || t).sharing), own.map(() => null));
  assert.equal(browser.posted.length, 0);
});

test("the share table answers each subscribe to the tab that asked and hints to those confirmed", () => {
  const table = _internals.createShareTable();
  table.subscribe("A", "c");
  table.subscribe("B", "c");
  assert.deepEqual(table.route({type: "subscribed", channel: "c"}), ["A"]);
  assert.deepEqual(table.route({type: "message", channel: "c"}), ["A"]);
  assert.deepEqual(table.route({type: "error", code: "forbidden", channel: "c"}), ["B"]);
  assert.deepEqual(table.route({type: "message", channel: "c"}), ["A"]);
  assert.equal(table.unsubscribe("A", "c"), true);
  assert.deepEqual(table.route({type: "message", channel: "c"}), []);
  assert.equal(table.route({type: "error", code: "invalid_json", channel: null}), null);
});
