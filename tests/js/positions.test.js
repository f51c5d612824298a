// Positions: what the page knows of each channel, and when a frame means it missed something.
"use strict";
const {test, mock} = require("node:test");
const assert = require("node:assert/strict");
const {createEnv, createChannel, clientTag} = require("../../static/js/pushgateway.js")._internals;
const {START, server, latest, settle, client, recorder, subscribed, tagOf, useFakes} = require("./fakes.js");

useFakes();

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

test("positions: a hint seen already is dropped, a gap or a new epoch is a resync", () => {
  const {cb} = subscribed("a", {throttle: 0});
  latest().message("a", 1);
  latest().deliver(latest().frame); // delivered twice
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

test("hints caused by this page's own requests do not call it back", async () => {
  const {pg, cb} = subscribed("a", {throttle: 0});
  await settle(); // the page's tag is computed
  const own = server.publish("a");
  const mine = tagOf(pg.clientId);
  latest().deliver({type: "message", channel: "a", id: "1", data: 1, position: own, client: mine});
  const other = server.publish("a");
  latest().deliver({type: "message", channel: "a", id: "2", data: 2, position: other, client: "someone"});
  mock.timers.tick(1);
  assert.deepEqual(cb.calls, [{channel: "a", reason: "message", data: 2, count: 1}]);

  server.publish("a"); // lost
  const later = server.publish("a");
  latest().deliver({type: "message", channel: "a", id: "4", data: 4, position: later, client: mine});
  mock.timers.tick(1);
  assert.deepEqual(cb.reasons(), ["message", "resync"]); // a gap before our own hint is news
});

test("a hint that carries the page's id itself, not its tag, is not the page's own", async () => {
  // Servers tag ids; a frame with the bare id came from somewhere that is not this protocol.
  const {pg, cb} = subscribed("a", {throttle: 0});
  await settle();
  const p = server.publish("a");
  latest().deliver({type: "message", channel: "a", id: "1", data: 1, position: p, client: pg.clientId});
  assert.deepEqual(cb.reasons(), ["message"]);
});

test("a page can opt out of skipping its own hints", async () => {
  const {pg, cb} = subscribed("a", {throttle: 0, ignoreOwn: false});
  await settle();
  const own = server.publish("a");
  latest().deliver({type: "message", channel: "a", id: "1", data: 1, position: own, client: tagOf(pg.clientId)});
  assert.deepEqual(cb.reasons(), ["message"]);
});

test("clientTag alone: Web Crypto's SHA-256 of the id as the server computes it, or null", async () => {
  // The value tests/unit/test_client_id.py expects from pushgateway.middleware.client_tag.
  const tag = await clientTag(createEnv({}), "5f0c3e2a9b1d47e8a6c2f0b3");
  assert.equal(tag, "7d34ce3f06b8a9a4698aad7c2c56e270");
  assert.equal(await clientTag(createEnv({crypto: {}}), "5f0c3e2a9b1d47e8a6c2f0b3"), null);
});

test("createChannel alone: what each confirmation, hint and server resync means for the page", () => {
  const resets = [];
  const ctx = {
    channels: new Map(),
    time: createEnv({}),
    config: {resyncGrace: 500},
    poller: {reset: (channel) => resets.push(channel.live)},
  };
  const channel = createChannel("a", {position: {epoch: "e1", seq: 3}}, ctx);
  ctx.channels.set("a", channel);
  const calls = [];
  channel.subscriptions.add({push: (reason, data) => calls.push([reason, data])});
  const at = (seq, epoch = "e1") => ({epoch, seq});

  channel.confirmed(at(3)); // the page knows where the server is
  assert.deepEqual([calls, resets, channel.live], [[], [true], true]);
  channel.message(at(4), "next", false, "m4");
  channel.message(at(4), "next", false, "m4"); // seen already
  channel.message(at(5), "next", false, "m4"); // the same hint again (a publisher's retry)
  channel.message(at(7), "gap", false, "m7");
  channel.message(at(8), "mine", true, "m8"); // the page's own, right after what it knew
  channel.message(at(10), "mine after a gap", true, "m10");
  assert.deepEqual(calls, [["message", "next"], ["resync", "gap"], ["resync", "mine after a gap"]]);
  channel.message(at(9), "restored", false, "x9"); // another hint at a seq the page passed
  channel.message(at(10), "after it", false, "x10");
  assert.deepEqual(calls.slice(3), [["resync", "restored"], ["message", "after it"]]);
  channel.position = at(9); // (as the rest of this test expects)

  calls.length = 0;
  channel.resync(at(9)); // where the page is already
  channel.resync(at(10)); // waits resyncGrace for the hint on its way
  mock.timers.tick(499);
  assert.deepEqual(calls, []);
  mock.timers.tick(1);
  assert.deepEqual([calls, channel.position], [[["resync", null]], at(10)]);

  calls.length = 0;
  channel.confirmed(at(1, "e2")); // a new epoch: the page cannot compare
  channel.confirmed(undefined); // no position: it cannot tell
  assert.deepEqual(calls, [["resync", null], ["resync", null]]);
});

// The position store came back older (a Redis restored from a snapshot or an AOF that lost
// its last second, a lagging replica promoted): the same epoch, a smaller seq. Whatever tells
// the page so, it is a new start: one resync, the server's position adopted, and the hints
// that follow it are delivered, not dropped as seen.

// A hint on "a" delivered on the latest socket, one callback window (throttle 0) each.
function hint(data) {
  latest().message("a", data);
  mock.timers.tick(1);
}

test("a store that went back: the confirmation after a reconnect resyncs once, later hints follow", () => {
  const {cb} = subscribed("a", {throttle: 0});
  for (let n = 1; n <= 5; n++) hint(n);
  latest().drop();
  server.positions.a = {epoch: "e1", seq: 2}; // restored from an older snapshot
  mock.timers.tick(1000);
  latest().open();
  latest().confirmAll();
  mock.timers.tick(1);
  assert.deepEqual(cb.reasons().slice(5), ["resync"]);
  hint("new 3");
  hint("new 4");
  assert.deepEqual(cb.calls.slice(5).map((c) => [c.reason, c.data]), [
    ["resync", null],
    ["message", "new 3"],
    ["message", "new 4"],
  ]);
});

test("a store that went back: a live hint at a seq the page passed is a new start", () => {
  const {cb} = subscribed("a", {throttle: 0});
  for (let n = 1; n <= 3; n++) hint(n);
  server.positions.a = {epoch: "e1", seq: 1}; // a lagging replica was promoted
  hint("new 2");
  hint("new 3");
  latest().deliver(latest().frame); // the same hint twice (a partition healed): still dropped
  mock.timers.tick(1);
  hint("new 4");
  assert.deepEqual(cb.calls.slice(3).map((c) => [c.reason, c.data]), [
    ["resync", "new 2"],
    ["message", "new 3"],
    ["message", "new 4"],
  ]);
});

test("a store that went back: a server resync behind the page is a new start at once", () => {
  const {cb} = subscribed("a", {throttle: 0});
  for (let n = 1; n <= 4; n++) hint(n);
  latest().deliver({type: "resync", channel: "a", position: {epoch: "e1", seq: 1}});
  mock.timers.tick(1);
  assert.deepEqual(cb.reasons().slice(4), ["resync"]);
  server.positions.a = {epoch: "e1", seq: 1};
  hint("new 2");
  assert.deepEqual(cb.reasons().slice(4), ["resync", "message"]);
});

test("a store that went back: a page without a socket is told by its next poll", async () => {
  const pg = client({positions: {a: {epoch: "e1", seq: 5}}});
  const cb = recorder();
  pg.subscribe("a", cb); // the WebSocket never opens
  server.positions.a = {epoch: "e1", seq: 2};
  mock.timers.tick(5000);
  await settle();
  assert.deepEqual(cb.reasons(), ["resync"]);
  mock.timers.tick(5000);
  await settle();
  assert.deepEqual(cb.reasons(), ["resync"]); // adopted: told once
  server.publish("a");
  mock.timers.tick(5000);
  await settle();
  assert.deepEqual(cb.reasons(), ["resync", "poll"]);
});

test("a positions answer older than a hint that arrived meanwhile is not a new start", async () => {
  let answer = null;
  const slowFetch = (url) => {
    const body = {positions: {a: server.position("a")}, errors: {}};
    return new Promise((resolve) => (answer = () => resolve({ok: true, json: () => Promise.resolve(body)})));
  };
  const {cb} = subscribed("a", {throttle: 0, pollUp: 60000, fetch: slowFetch});
  hint(1);
  mock.timers.tick(60000); // the safety-net check asks where "a" is...
  await settle();
  hint(2); // ...and a hint overtakes its answer
  answer();
  await settle();
  mock.timers.tick(1000);
  assert.deepEqual(cb.reasons(), ["message", "message"]);
  hint(3);
  assert.deepEqual(cb.reasons(), ["message", "message", "message"]);
});
