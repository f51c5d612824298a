// Polling the positions view: intervals, blind polls, hidden tabs.
"use strict";
const {test, mock} = require("node:test");
const assert = require("node:assert/strict");
const {createEnv, createPoller, positionsRequests} = require("../../static/js/pushgateway.js")._internals;
const {START, server, latest, settle, client, recorder, subscribed, quietly, useFakes} = require("./fakes.js");

useFakes();

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
  assert.equal(server.requests.length, 12); // one small request per 5 s for all three
  assert.deepEqual(server.requests[0], {url: "/pushgateway/positions/", channels: names, tokens: {}});
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
  await quietly("warn", async () => {
    mock.timers.tick(5000);
    await settle();
  });
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

test("a poll asks about at most maxPositionsPerRequest channels a request", async () => {
  const names = Array.from({length: 300}, (_, n) => `c${n}`); // 300 short names: a short URL
  const pg = client({positions: Object.fromEntries(names.map((n) => [n, START]))});
  const calls = recorder();
  for (const n of names) pg.subscribe(n, calls);
  mock.timers.tick(5000);
  await settle();
  const asked = server.asked();
  assert.deepEqual(asked.map((items) => items.length), [100, 100, 100]); // not one refused request
  assert.deepEqual(asked.flat(), names);
  assert.deepEqual(calls.calls, []); // every request answered: nothing moved, no blind refetch
});

test("tokens travel in a POST body, never in the URL that access logs keep", async () => {
  const seen = [];
  const fetch = (url, init) => (seen.push([url, init]), server.fetch(url, init));
  const pg = client({fetch, positions: {"private-a": START, b: START}});
  pg.subscribe("private-a", () => {}, {token: "private-a:1:secret"});
  pg.subscribe("b", () => {});
  mock.timers.tick(5000);
  await settle();
  const [[url, init]] = seen;
  assert.equal(url, "/pushgateway/positions/");
  assert.equal(init.method, "POST");
  assert.equal(init.headers["Content-Type"], "application/json");
  assert.deepEqual(JSON.parse(init.body), {
    channels: ["private-a", "b"],
    tokens: {"private-a": "private-a:1:secret"},
  });
});

test("while connected, a hint lost on the way is caught by the pollUp check as a poll", async () => {
  const {cb} = subscribed("a");
  server.publish("a"); // published, but its hint never reaches the socket
  mock.timers.tick(300000);
  await settle();
  assert.deepEqual(cb.reasons(), ["poll"]);
});

test("positionsRequests alone: at most maxPositionsPerRequest each, tokens in the body", () => {
  const channel = (name, token) => ({name, token});
  const many = Array.from({length: 250}, (_, n) => channel(`c${n}`));
  const requests = positionsRequests("/p/", many);
  assert.deepEqual(requests.map((r) => r.channels.length), [100, 100, 50]);
  assert.deepEqual(requests.flatMap((r) => r.channels), many);
  const [request] = positionsRequests("/p/?v=2", [channel("a"), channel("private-b", "t:1")]);
  assert.equal(request.url, "/p/?v=2");
  assert.deepEqual(request.body, {channels: ["a", "private-b"], tokens: {"private-b": "t:1"}});
  assert.deepEqual(positionsRequests("/p/", []), []);
});

test("createPoller alone: live channels every pollUp, others every pollDown, due ones together", () => {
  const checked = [];
  const ctx = {
    channels: new Map(),
    time: createEnv({}),
    config: {pollDown: 5000, pollUp: 60000},
    checker: {check: (channels, reason) => checked.push([channels.map((c) => c.name), reason])},
  };
  const poller = createPoller(ctx);
  for (const [name, live] of [["down", false], ["up", true], ["soon", false]]) {
    ctx.channels.set(name, {name, live, nextPoll: 0});
    if (name === "soon") mock.timers.tick(600); // due 0.6 s after "down": rides along with it
    poller.reset(ctx.channels.get(name));
  }
  mock.timers.tick(4400);
  assert.deepEqual(checked, [[["down", "soon"], "poll"]]);
  for (let t = 0; t < 10; t++) mock.timers.tick(5000); // (a tick runs each timer once)
  assert.deepEqual(checked.map(([names]) => names.join()), Array(11).fill("down,soon"));
  mock.timers.tick(5000); // a minute since "up" became live: it is due too
  assert.deepEqual(checked.at(-1), [["down", "up", "soon"], "poll"]);
  poller.stop();
  mock.timers.tick(60000);
  assert.equal(checked.length, 12);
});
