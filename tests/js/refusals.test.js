// Subscriptions the server refuses: over the limit, unavailable, rate limited, a refused token.
"use strict";
const {test, mock} = require("node:test");
const assert = require("node:assert/strict");
const {START, FakeSocket, server, latest, settle, client, fakeWindow, recorder, quietly, useFakes} =
  require("./fakes.js");

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
  assert.ok(server.asked().every((names) => names.includes("c100") && !names.includes("c99")));
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
    // The hook could not replace that token: it is not asked about it again.
    latest().deliver({type: "error", code: "forbidden", message: "no", channel: "private-a"});
    await settle();
    assert.equal(asked.length, 2);
  });
  assert.deepEqual(cb.calls, []);
});

// A page at `href` whose HTML, fetched again, renders `tokens` as {% pushgateway_script %} does.
function pageServer(href, tokens) {
  const fetched = [];
  const config = JSON.stringify({tokens}).replaceAll("<", "\\u003C");
  const html = `<html><script id="pushgateway-config" type="application/json">${config}</script>`;
  const fetch = (url, init) => {
    if (url !== href) return server.fetch(url, init);
    fetched.push(init);
    return Promise.resolve({ok: true, text: () => Promise.resolve(html)});
  };
  return {fetch, fetched};
}

test("without a getToken hook, a refused token is renewed from the page itself, once for all", async () => {
  const href = "https://example.org/invoices/17/";
  const page = pageServer(href, {"private-a": "fresh-a", "private-b": "fresh-b"});
  const win = fakeWindow(undefined);
  win.location = {href};
  const pg = client({window: win, fetch: page.fetch, tokens: {"private-a": "old-a", "private-b": "old-b"}});
  pg.subscribe("private-a", () => {});
  pg.subscribe("private-b", () => {});
  latest().open();
  await quietly("warn", async () => {
    for (const channel of ["private-a", "private-b"]) {
      latest().deliver({type: "error", code: "forbidden", message: "expired", channel});
    }
    await settle();
  });
  assert.equal(page.fetched.length, 1); // one fetch of the page for both channels
  assert.equal(page.fetched[0].cache, "no-store"); // not the HTTP cache's copy, old tokens and all
  assert.equal(page.fetched[0].credentials, "same-origin"); // the view decides for this user again
  const tokens = latest().subscribes().slice(2).map((frame) => [frame.channel, frame.token]);
  assert.deepEqual(tokens, [["private-a", "fresh-a"], ["private-b", "fresh-b"]]);
});

test("a page that no longer renders the token is asked once, then the channel is left alone", async () => {
  const href = "https://example.org/invoices/17/";
  const page = pageServer(href, {}); // the user lost access: the view renders no token
  const win = fakeWindow(undefined);
  win.location = {href};
  const pg = client({window: win, fetch: page.fetch, tokens: {"private-a": "old"}, pollDown: 5000});
  pg.subscribe("private-a", () => {});
  latest().open();
  server.tokens["private-a"] = "only-the-fresh-one"; // the positions view refuses "old" too
  await quietly("warn", async () => {
    latest().deliver({type: "error", code: "forbidden", message: "expired", channel: "private-a"});
    for (let t = 0; t < 30000; t += 5000) {
      mock.timers.tick(5000);
      await settle();
    }
  });
  assert.equal(page.fetched.length, 1); // polls are refused too, and do not fetch the page again
  assert.equal(latest().subscribes().length, 1);
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
