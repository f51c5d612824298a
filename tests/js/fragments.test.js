// Fragments: elements that follow a channel (data-pushgateway-channel) are subscribed while
// they are in the document and told by a "pushgateway:change" event; a fragment replaced by
// its refetched self loses no hint; subscribe()'s `since`.
"use strict";
const {test, mock} = require("node:test");
const assert = require("node:assert/strict");
const {watchFragments, fromDocument, FACTS} = require("../../static/js/pushgateway.js");
const {FakeSocket, server, latest, settle, client, recorder, quietly, useFakes} =
  require("./fakes.js");
const {FakeDocument, FakeMutationObserver, element} = require("./dom.js");

useFakes();

const ATTR = FACTS.fragmentAttributes;
const since = (position) => JSON.stringify(position);

// A fragment following `channel`, rendered at the server's position now.
function fragment(channel, extra) {
  const rendered = since(server.position(channel));
  return element("div", {[ATTR.channel]: channel, [ATTR.since]: rendered, ...extra});
}

// A document with `nodes` in its body, a client on the fakes and the fragments followed.
function page(...nodes) {
  const doc = new FakeDocument();
  doc.body.append(...nodes);
  const pg = client();
  const stop = watchFragments(pg, doc, {MutationObserver: FakeMutationObserver});
  return {doc, pg, stop};
}

// The events `node` heard, as [reason, data, count].
const heard = (node) => node.heard.map((e) => [e.detail.reason, e.detail.data, e.detail.count]);
const sentTypes = (type) => latest().sent.filter((f) => f.type === type).map((f) => f.channel);

test("a fragment present at load subscribes with its since and token and hears its hints", () => {
  server.publish("private-inbox");
  const box = fragment("private-inbox", {[ATTR.token]: "t0k3n"});
  page(element("section", {}, box));
  latest().open();
  const position = server.position("private-inbox");
  assert.deepEqual(latest().subscribes(), [
    {type: "subscribe", channel: "private-inbox", since: position, token: "t0k3n"},
  ]);
  latest().confirmAll();
  const listened = [];
  box.addEventListener(FACTS.fragmentEvent, (e) => listened.push(e.detail.reason));
  latest().message("private-inbox", {pk: "3"});
  const [event] = box.heard;
  assert.equal(event.type, "pushgateway:change");
  assert.equal(event.bubbles, true); // so a listener on the document hears it too
  const detail = {channel: "private-inbox", reason: "message", data: {pk: "3"}, count: 1};
  assert.deepEqual(event.detail, detail);
  assert.deepEqual(listened, ["message"]);
});

test("a fragment added later subscribes; removed, it unsubscribes and hears no more", async () => {
  const {doc, pg} = page(fragment("events"));
  latest().open();
  latest().confirmAll();
  const comments = fragment("comments-7");
  doc.body.append(element("main", {}, comments));
  assert.deepEqual(sentTypes("subscribe"), ["events"], "not before the observer's microtask");
  await settle();
  assert.deepEqual(sentTypes("subscribe"), ["events", "comments-7"]);
  latest().confirmAll();
  comments.parentNode.remove(); // its parent leaves the document
  await settle();
  assert.deepEqual(sentTypes("unsubscribe"), ["comments-7"]);
  latest().message("comments-7", {pk: "1"});
  assert.deepEqual(heard(comments), []);
  assert.equal(pg.state, "connected"); // "events" still followed
});

test("the last fragment gone closes the socket; two on one channel share it", async () => {
  const first = fragment("events");
  const second = fragment("events");
  const {pg} = page(first, second);
  latest().open();
  latest().confirmAll();
  assert.deepEqual(sentTypes("subscribe"), ["events"]);
  first.remove();
  await settle();
  assert.deepEqual(sentTypes("unsubscribe"), []);
  latest().message("events", null);
  assert.deepEqual([heard(first), heard(second)], [[], [["message", null, 1]]]);
  second.remove();
  await settle();
  assert.deepEqual(sentTypes("unsubscribe"), ["events"]);
  assert.equal(pg.state, "idle");
});

test("a fragment replaced by its refetched self keeps the channel's subscription", async () => {
  const old = fragment("comments-7");
  page(old);
  latest().open();
  latest().confirmAll();
  latest().message("comments-7", {pk: "1"}); // the page refetches: the view renders at seq 1
  const fresh = fragment("comments-7");
  old.replaceWith(fresh);
  await settle();
  assert.equal(FakeSocket.all.length, 1);
  assert.deepEqual(latest().sent.map((f) => f.type), ["subscribe"]);
  assert.deepEqual(heard(fresh), [], "it shows hint 1 already");
  mock.timers.tick(500);
  latest().message("comments-7", {pk: "2"});
  assert.deepEqual(heard(fresh), [["message", {pk: "2"}, 1]]);
  assert.deepEqual(heard(old), [["message", {pk: "1"}, 1]]);
});

test("a replacement rendered before a hint the page had is told: no hint is lost", async () => {
  const old = fragment("comments-7");
  page(old);
  latest().open();
  latest().confirmAll();
  latest().message("comments-7", {pk: "1"}); // leading edge: the refetch starts
  const fresh = fragment("comments-7"); // ... and the view renders at seq 1
  latest().message("comments-7", {pk: "2"}); // hint 2 waits for old's trailing edge
  old.replaceWith(fresh); // old goes with its pending call
  await settle();
  assert.deepEqual(heard(fresh), [["resync", null, 1]]);
  mock.timers.tick(1000);
  assert.deepEqual(heard(old), [["message", {pk: "1"}, 1]]);
  assert.deepEqual(heard(fresh), [["resync", null, 1]]);
});

test("changing a fragment's channel moves its subscription", async () => {
  const box = fragment("comments-1");
  page(box);
  latest().open();
  latest().confirmAll();
  box.setAttribute(ATTR.channel, "comments-2");
  await settle();
  assert.deepEqual(sentTypes("subscribe"), ["comments-1", "comments-2"]);
  assert.deepEqual(sentTypes("unsubscribe"), ["comments-1"]);
  box.setAttribute("class", "other"); // not observed: nothing happens
  box.removeAttribute(ATTR.channel);
  await settle();
  assert.deepEqual(sentTypes("unsubscribe"), ["comments-1", "comments-2"]);
});

test("a fragment's callbacks are throttled like a subscription's, by its own attribute too", () => {
  const plain = fragment("a");
  const quick = fragment("b", {[ATTR.throttle]: "100"});
  page(plain, quick);
  latest().open();
  latest().confirmAll();
  for (const channel of ["a", "a", "a", "b", "b"]) latest().message(channel, {channel});
  mock.timers.tick(100);
  const b = ["message", {channel: "b"}, 1];
  assert.deepEqual([heard(plain).length, heard(quick)], [1, [b, b]]);
  mock.timers.tick(400);
  assert.deepEqual(heard(plain), [["message", {channel: "a"}, 1], ["message", {channel: "a"}, 2]]);
});

test("a bad channel name or since is logged and does not stop the others", () => {
  const bad = element("div", {[ATTR.channel]: "no spaces"});
  const odd = element("div", {[ATTR.channel]: "ok", [ATTR.since]: "{not json"});
  quietly("warn", () => quietly("error", () => page(bad, odd)));
  latest().open();
  assert.deepEqual(latest().subscribes(), [{type: "subscribe", channel: "ok"}]);
});

test("stop() unsubscribes every fragment and stops watching", async () => {
  const box = fragment("events");
  const {doc, pg, stop} = page(box);
  latest().open();
  stop();
  assert.equal(pg.state, "idle");
  doc.body.append(fragment("later"));
  await settle();
  assert.equal(FakeSocket.all.length, 1);
  assert.deepEqual(latest().subscribes().map((f) => f.channel), ["events"]);
});

test("the page's client follows its document's fragments", async () => {
  const doc = new FakeDocument();
  doc.getElementById = () => null;
  doc.body.append(fragment("events"));
  const globals = {MutationObserver: FakeMutationObserver, WebSocket: FakeSocket};
  Object.assign(globalThis, globals); // what a browser has
  try {
    fromDocument(doc);
    doc.body.append(fragment("comments-1"));
    await settle();
  } finally {
    Object.keys(globals).forEach((name) => delete globalThis[name]);
  }
  latest().open();
  assert.deepEqual(latest().subscribes().map((f) => f.channel), ["events", "comments-1"]);
});

test("subscribe's since: a new channel's position, or a resync if the page knows more", async () => {
  server.publish("a");
  const pg = client();
  const known = recorder();
  pg.subscribe("a", known, {since: server.position("a")});
  latest().open();
  const frame = {type: "subscribe", channel: "a", since: {epoch: "e1", seq: 1}};
  assert.deepEqual(latest().subscribes(), [frame]);
  latest().confirmAll();
  latest().message("a", null);
  const behind = recorder();
  const current = recorder();
  const without = recorder();
  pg.subscribe("a", behind, {since: {epoch: "e1", seq: 1}});
  pg.subscribe("a", current, {since: server.position("a")});
  pg.subscribe("a", without);
  assert.deepEqual(behind.calls, [], "called back after subscribe() returns");
  await settle();
  assert.deepEqual(behind.reasons(), ["resync"]);
  assert.deepEqual([current.calls, without.calls], [[], []]);
  assert.deepEqual(known.reasons(), ["message"]);
});
