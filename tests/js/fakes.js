// What the browser module's tests share: fake timers and clock, a fake WebSocket, and a fake
// server that keeps stream positions and answers the positions view. Not a test file itself
// (node --test runs *.test.js); each test file calls useFakes() once.
"use strict";
const {beforeEach, afterEach, mock} = require("node:test");
const {createHash} = require("node:crypto");
const {createClient, FACTS} = require("../../static/js/pushgateway.js");

const START = {epoch: "", seq: 0};

// Stream positions as the server keeps them, and the positions view over them.
class FakeServer {
  constructor() {
    this.reset();
  }
  reset() {
    this.positions = {};
    this.requests = [];
    this.tokens = {}; // channel -> the only token the positions view accepts for it
    this.down = false;
    this.epochs = 0;
    this.ids = 0; // message ids: unique per publish, as the server's
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
  // The positions view: a POST of {channels, tokens}. Each request is recorded as
  // {url, channels, tokens}; a private channel's token must be `this.tokens[channel]` when
  // that is set.
  fetch(url, init) {
    const method = (init && init.method) || "GET";
    if (method !== "POST") throw new Error(`the positions view is asked with POST, not ${method}`);
    const {channels, tokens} = JSON.parse(init.body);
    this.requests.push({url, channels, tokens});
    if (this.down) return Promise.reject(new TypeError("Failed to fetch"));
    if (channels.length > FACTS.maxPositionsPerRequest) {
      // As the view does: a request for too many channels is refused, not half answered.
      return Promise.resolve({ok: false, status: 400, json: () => Promise.resolve({})});
    }
    const positions = {};
    const errors = {};
    for (const name of channels) {
      const wanted = this.tokens[name];
      if (wanted !== undefined && tokens[name] !== wanted) errors[name] = "forbidden";
      else positions[name] = this.position(name);
    }
    return Promise.resolve({ok: true, json: () => Promise.resolve({positions, errors})});
  }
  // The channels each request asked about.
  asked() {
    return this.requests.map((request) => request.channels);
  }
}

const server = new FakeServer();

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
  // Publish on the fake server and deliver the hint on this socket; `frame` is the last one.
  message(channel, data) {
    const position = server.publish(channel);
    this.frame = {type: "message", channel, id: `m${++server.ids}`, data, position};
    this.deliver(this.frame);
    return position;
  }
}

// One origin's BroadcastChannels and Web Locks, as the tabs of one browser share them.
// tab() gives what one tab's client is configured with ({BroadcastChannel, locks}) and
// close(), which ends that tab as closing it does: its channels closed, its locks released,
// nothing said. Messages arrive in order, each in a later task (settleAll() lets them).
class FakeBrowser {
  constructor() {
    this.buses = new Set(); // open channels of every tab
    this.held = new Map(); // lock name -> the request holding it
    this.queues = new Map(); // lock name -> requests waiting, in order
    this.posted = []; // every message, for tests that look at the bus
  }
  tab() {
    const browser = this;
    const tab = {closed: false};
    tab.BroadcastChannel = class {
      constructor(name) {
        Object.assign(this, {name, tab, closed: false, onmessage: null});
        browser.buses.add(this);
      }
      postMessage(data) {
        if (this.closed) throw new Error("InvalidStateError: the channel is closed");
        const copy = JSON.parse(JSON.stringify(data)); // structured clone, near enough
        browser.posted.push(copy);
        for (const bus of browser.buses) {
          if (bus === this || bus.name !== this.name) continue;
          setImmediate(() => !bus.closed && bus.onmessage && bus.onmessage({data: copy}));
        }
      }
      close() {
        this.closed = true;
        browser.buses.delete(this);
      }
    };
    tab.locks = {
      request: (name, options, callback) => browser.request(tab, name, options, callback),
      query: () => Promise.resolve({held: Array.from(browser.held.keys(), (name) => ({name}))}),
    };
    tab.close = () => browser.closeTab(tab);
    return tab;
  }
  request(tab, name, options, callback) {
    return new Promise((resolve, reject) => {
      const entry = {tab, callback, resolve, reject};
      const signal = options && options.signal;
      if (signal) {
        signal.addEventListener("abort", () => {
          const queue = this.queues.get(name) || [];
          if (!queue.includes(entry)) return;
          queue.splice(queue.indexOf(entry), 1);
          reject(new Error("AbortError"));
        });
      }
      if (!this.queues.has(name)) this.queues.set(name, []);
      this.queues.get(name).push(entry);
      this.grant(name);
    });
  }
  grant(name) {
    const queue = this.queues.get(name) || [];
    if (this.held.has(name) || queue.length === 0) return;
    const entry = queue.shift();
    this.held.set(name, entry);
    const done = () => {
      if (this.held.get(name) !== entry) return;
      this.held.delete(name);
      this.grant(name);
    };
    Promise.resolve()
      .then(() => entry.callback({name}))
      .then((value) => (done(), entry.resolve(value)), (error) => (done(), entry.reject(error)));
  }
  closeTab(tab) {
    tab.closed = true;
    for (const bus of Array.from(this.buses)) if (bus.tab === tab) bus.close();
    for (const [name, queue] of this.queues) {
      this.queues.set(name, queue.filter((entry) => entry.tab !== tab));
    }
    for (const [name, entry] of Array.from(this.held)) {
      if (entry.tab !== tab) continue;
      this.held.delete(name);
      this.grant(name);
    }
  }
}

// Lets every message, lock grant and promise chain run (the bus delivers in later tasks).
async function settleAll(rounds = 20) {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

const latest = () => FakeSocket.all[FakeSocket.all.length - 1];
const settle = () => new Promise((resolve) => setImmediate(resolve));

// SubtleCrypto's digest, answered at once (Web Crypto's runs on a thread and answers later).
const fakeCrypto = {
  subtle: {digest: (algorithm, data) => Promise.resolve(createHash("sha256").update(data).digest())},
};

// The tag the server puts on hints a page with client id `id` caused (middleware.client_tag).
const tagOf = (id) => createHash("sha256").update(id).digest("hex").slice(0, 32);

// A client on the fakes.
function client(options) {
  return createClient(
    Object.assign(
      {
        url: "ws://test/ws/pushgateway/",
        positionsUrl: "/pushgateway/positions/",
        WebSocket: FakeSocket,
        transport: "websocket", // the stream's tests (stream.test.js) choose "auto"
        fetch: (url, init) => server.fetch(url, init),
        crypto: fakeCrypto,
        random: () => 0.5,
        share: false, // tests of sharing turn it on, with a FakeBrowser's tab
      },
      options
    )
  );
}

// A window whose document holds the configuration {% pushgateway_script %} renders (`config`
// as the JSON text of #pushgateway-config, or no such element when it is undefined).
function fakeWindow(config) {
  const doc = new EventTarget();
  doc.visibilityState = "visible";
  doc.getElementById = (id) =>
    id === "pushgateway-config" && config !== undefined ? {textContent: JSON.stringify(config)} : null;
  const win = new EventTarget();
  win.document = doc;
  return win;
}

// A callback that records its calls.
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

// Runs `fn` with console[method] silenced (for what the module warns about) and returns what
// it returns; when that is a promise, the console is restored once it settles.
function quietly(method, fn) {
  const original = console[method];
  const restore = () => (console[method] = original);
  console[method] = () => {};
  let result;
  try {
    result = fn();
  } catch (error) {
    restore();
    throw error;
  }
  if (result instanceof Promise) return result.finally(restore);
  restore();
  return result;
}

// Fresh fakes and fake timers (setTimeout and Date, from a fixed moment) around every test of
// the calling file.
function useFakes() {
  beforeEach(() => {
    FakeSocket.all = [];
    server.reset();
    mock.timers.enable({apis: ["setTimeout", "Date"], now: 1_000_000});
  });
  afterEach(() => mock.timers.reset());
}

module.exports = {
  START,
  FakeServer,
  FakeSocket,
  FakeBrowser,
  settleAll,
  server,
  latest,
  settle,
  client,
  fakeWindow,
  recorder,
  subscribed,
  quietly,
  tagOf,
  useFakes,
};
