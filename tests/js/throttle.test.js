// The per-subscription callback window.
"use strict";
const {test, mock} = require("node:test");
const assert = require("node:assert/strict");
const {createEnv, createThrottle} = require("../../static/js/pushgateway.js")._internals;
const {server, latest, subscribed, useFakes} = require("./fakes.js");

useFakes();

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

test("createThrottle alone: a window folds events, the strongest reason wins, stop drops them", () => {
  const time = createEnv({});
  const fired = [];
  const throttle = createThrottle(time, 1000, (event) => fired.push(event));
  throttle.push("message", 1); // leading edge: at once
  throttle.push("poll", null); // no data: the latest data stays
  throttle.push("message", 2);
  throttle.push("resync", null);
  throttle.push("message", 3);
  assert.deepEqual(fired, [{reason: "message", data: 1, count: 1}]);
  mock.timers.tick(1000); // trailing edge
  assert.deepEqual(fired[1], {reason: "resync", data: 3, count: 4});
  mock.timers.tick(1000); // a quiet window ends the run: the next event leads again
  throttle.push("poll", null);
  assert.deepEqual(fired[2], {reason: "poll", data: null, count: 1});
  throttle.push("message", 4);
  throttle.stop();
  throttle.push("message", 5);
  mock.timers.tick(5000);
  assert.equal(fired.length, 3);
});
