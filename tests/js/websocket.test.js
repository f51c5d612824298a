// The WebSocket transport: backoff, close codes, ping and pong, hostile frames, the page's URL.
"use strict";
const {test, mock} = require("node:test");
const assert = require("node:assert/strict");
const {createClient, DEFAULTS, FACTS, _internals} = require("../../static/js/pushgateway.js");
const {createEnv, createHeartbeat, createBackoff} = _internals;
const {START, FakeSocket, server, latest, client, recorder, subscribed, quietly, useFakes} =
  require("./fakes.js");

useFakes();

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
  quietly("warn", () => {
    latest().drop(4008);
  });
  const before = FakeSocket.all.length;
  mock.timers.tick(14999);
  assert.equal(FakeSocket.all.length, before);
  mock.timers.tick(1);
  assert.equal(FakeSocket.all.length, before + 1);
  assert.equal(pg.state, "connecting");
});

test("too many connections from the page's address (4029) backs off long, like a policy close", () => {
  const pg = client({backoffInitial: 1000, backoffMax: 30000, pollDown: 0, random: () => 0});
  pg.subscribe("a", () => {});
  latest().open();
  quietly("warn", () => {
    latest().drop(FACTS.closeCodes.TOO_MANY_CONNECTIONS); // accepted, then closed at once
  });
  assert.equal(FACTS.closeCodes.TOO_MANY_CONNECTIONS, 4029);
  const before = FakeSocket.all.length;
  mock.timers.tick(14999); // reconnecting at once would only be refused again
  assert.equal(FakeSocket.all.length, before);
  mock.timers.tick(1);
  assert.equal(FakeSocket.all.length, before + 1);
});

test("a service-restart close reconnects soon with jitter and does not climb the backoff", () => {
  let random = 0.5;
  const pg = client({
    random: () => random, backoffInitial: 1000, backoffMax: 30000, restartDelay: 3000, pollDown: 0,
  });
  pg.subscribe("a", () => {});
  latest().drop(); // two failed attempts: the ladder is at 4 s (2-4 s with jitter)
  mock.timers.tick(1000);
  latest().drop();
  mock.timers.tick(2000);
  for (const code of [FACTS.closeCodes.SERVICE_RESTART, ...FACTS.restartCloses]) {
    latest().open();
    random = 0.9;
    const before = FakeSocket.all.length;
    latest().drop(code); // the server drains: back within restartDelay, at a random moment
    assert.equal(pg.state, "waiting");
    mock.timers.tick(2699);
    assert.equal(FakeSocket.all.length, before);
    mock.timers.tick(1);
    assert.equal(FakeSocket.all.length, before + 1, `reconnected after ${code}`);
  }
  random = 0;
  const before = FakeSocket.all.length;
  latest().drop(); // a plain failure next: the ladder goes on where it was, not further up
  mock.timers.tick(1999);
  assert.equal(FakeSocket.all.length, before);
  mock.timers.tick(1);
  assert.equal(FakeSocket.all.length, before + 1);
});

test("after a service restart the page resubscribes with its positions and refetches only what moved", () => {
  const pg = client({throttle: 0, positions: {quiet: START, busy: START}});
  const calls = {quiet: recorder(), busy: recorder()};
  Object.entries(calls).forEach(([channel, callback]) => pg.subscribe(channel, callback));
  latest().open();
  latest().confirmAll();
  const seen = latest().message("quiet", 1);
  latest().drop(FACTS.closeCodes.SERVICE_RESTART);
  server.publish("busy"); // while the page was away
  mock.timers.tick(DEFAULTS.restartDelay);
  latest().open();
  assert.deepEqual(latest().subscribes(), [
    {type: "subscribe", channel: "quiet", since: seen},
    {type: "subscribe", channel: "busy", since: START},
  ]);
  latest().confirmAll();
  mock.timers.tick(60000);
  assert.deepEqual(calls.quiet.reasons(), ["message"]);
  assert.deepEqual(calls.busy.reasons(), ["resync"]);
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

test("frames that are not what they claim are ignored", () => {
  const {cb} = subscribed("a", {throttle: 0});
  quietly("warn", () => {
    for (const text of ["null", "[]", "7", "{", '{"type":"message"}']) {
      latest().onmessage({data: text});
    }
    latest().deliver({type: "subscribed", channel: "nope", position: START});
  });
  assert.deepEqual(cb.calls, []);
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

test("createHeartbeat alone: pings on time, early when asked, and gives up without a pong", () => {
  const sent = [];
  let dead = 0;
  const config = {pingInterval: 10000, pongTimeout: 2000};
  const send = (frame) => sent.push(frame.type);
  const heartbeat = createHeartbeat(createEnv({}), config, send, () => dead++);
  heartbeat.start();
  heartbeat.soon(1500); // due in 10 s: brought forward
  mock.timers.tick(1500);
  assert.deepEqual(sent, ["ping"]);
  heartbeat.pong(); // answered: the next ping a full interval later
  heartbeat.soon(20000); // due sooner already: unchanged
  mock.timers.tick(9999);
  assert.deepEqual(sent, ["ping"]);
  mock.timers.tick(1);
  assert.deepEqual(sent, ["ping", "ping"]);
  mock.timers.tick(1999);
  assert.equal(dead, 0);
  mock.timers.tick(1); // no pong within pongTimeout
  assert.equal(dead, 1);
  heartbeat.start();
  heartbeat.stop();
  mock.timers.tick(60000);
  assert.deepEqual([sent.length, dead], [2, 1]);
});

test("createBackoff alone: doubling waits up to the cap, the longest after a policy close", () => {
  let random = 0;
  const time = createEnv({random: () => random});
  const backoff = createBackoff(time, {backoffInitial: 1000, backoffMax: 8000, stableAfter: 10000});
  const waits = (n) => Array.from({length: n}, () => backoff.next());
  assert.deepEqual(waits(5), [500, 1000, 2000, 4000, 4000]); // half fixed, half random (0 here)
  backoff.reset();
  random = 1;
  assert.deepEqual(waits(2), [1000, 2000]);
  backoff.dropped("policy"); // closed for misbehaviour: straight to the longest
  assert.deepEqual(waits(1), [8000]);
  backoff.opened();
  mock.timers.tick(9999);
  backoff.dropped("drop"); // not up long enough: no fresh start
  assert.deepEqual(waits(1), [8000]);
  backoff.opened();
  mock.timers.tick(10000); // stayed up
  assert.deepEqual(waits(1), [1000]);
});

test("createBackoff alone: after a service restart a random wait within restartDelay, the ladder unmoved", () => {
  let random = 0;
  const time = createEnv({random: () => random});
  const config = {backoffInitial: 1000, backoffMax: 8000, stableAfter: 10000, restartDelay: 3000};
  const backoff = createBackoff(time, config);
  assert.deepEqual([backoff.next(), backoff.next()], [500, 1000]);
  backoff.dropped("restart");
  random = 0.25;
  assert.deepEqual([backoff.next("restart"), backoff.next("restart")], [750, 750]);
  random = 0;
  assert.deepEqual([backoff.next()], [2000]); // where the ladder was
});
