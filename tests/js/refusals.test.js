// Subscriptions the server refuses: over the limit, unavailable, rate limited, a refused token.
"use strict";
const {test, mock} = require("node:test");
const assert = require("node:assert/strict");
const {START, FakeSocket, server, latest, settle, client, recorder, quietly, useFakes} = require("./fakes.js");

useFakes();

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
  await quietly("warn", async () => {
    for (let t = 0; t < 25000; t += 1000) {
      mock.timers.tick(1000);
      await settle();
    }
  });
  assert.equal(FakeSocket.all.length, 1); // never closed, never reopened
  assert.equal(socket.subscribes().length, 130); // the refused ones were not asked again
  assert.ok(cbs.every((cb) => cb.calls.length === 1), "one callback per channel");
  assert.ok(server.requests.every((url) => url.includes("c=c100") && !url.includes("c=c99&")));
});

test("a server that cannot join a channel yet is asked again", () => {
  const pg = client({pollDown: 3000, positions: {a: START}, positionsUrl: null});
  const cb = recorder();
  pg.subscribe("a", cb);
  latest().open();
  quietly("warn", () => {
    latest().deliver({type: "error", code: "unavailable", message: "later", channel: "a"});
  });
  mock.timers.tick(3000);
  assert.equal(latest().subscribes().length, 2);
  latest().deliver({type: "subscribed", channel: "a", position: START, stale: false});
  mock.timers.tick(500);
  assert.deepEqual(cb.reasons(), ["poll"]); // polled blindly meanwhile; nothing was missed
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
  await quietly("warn", async () => {
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
  });
  assert.deepEqual(cb.calls, []);
});

test("a subscribe refused for asking too fast is asked again when the server says", () => {
  const pg = client({positions: {a: START}, positionsUrl: null, pollDown: 0});
  const cb = recorder();
  pg.subscribe("a", cb);
  latest().open();
  quietly("warn", () => {
    latest().deliver({type: "error", code: "rate_limited", message: "slow down", channel: "a", retry_after: 2});
  });
  mock.timers.tick(1999);
  assert.equal(latest().subscribes().length, 1);
  mock.timers.tick(1);
  assert.equal(latest().subscribes().length, 2);
  latest().deliver({type: "subscribed", channel: "a", position: START, stale: false});
  assert.deepEqual(cb.calls, []);
  assert.equal(FakeSocket.all.length, 1);
});
