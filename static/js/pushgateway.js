/*
 * django-pushgateway browser module. One file, no build step, no dependencies.
 *
 *   const unsubscribe = PushGateway.subscribe("comments-7", ({channel, reason, data, count}) => {
 *     refetchComments();            // reason: "message" | "resync" | "poll"
 *   }, {throttle: 500});
 *   PushGateway.onStateChange((state, previous) => ...);
 *
 * A page is never stale and never refetches for nothing. Every channel has a stream position
 * ({epoch, seq}); the module keeps the last one it knows per channel (rendered into the page
 * by {% pushgateway_script %}, then from the server) and compares: a hint that follows it is
 * a "message", a gap or a new epoch is a "resync", and after a reconnect the server says
 * which channels moved meanwhile; only those resync. While it has no socket the module asks
 * the positions view every pollDown ms (every pollUp ms while it has one, as a safety net)
 * and calls back "poll" only for channels that moved, or for all of them when it cannot ask.
 *
 * Per subscription callbacks are throttled (leading and trailing edge, so the last hint is
 * never lost; the strongest reason of a window wins: resync > poll > message). One socket per
 * page, opened on first subscribe, reconnected with capped exponential backoff and jitter.
 *
 * Connection states: "idle" (no subscriptions, no socket), "connecting", "connected",
 * "waiting" (backing off before the next attempt).
 */
(function (root, factory) {
  "use strict";
  const api = factory();
  // For the ES module entry (pushgateway.mjs), however this file was loaded.
  globalThis.PushGatewayAPI = api;
  if (typeof module === "object" && module.exports) {
    module.exports = api;
  } else {
    // The page's client, configured by {% pushgateway_script %}; createClient makes more.
    root.PushGateway = Object.assign(api.fromDocument(root.document), {
      createClient: api.createClient,
    });
    // The tag loads this file with `defer`: code that runs earlier can wait for this event.
    if (root.document && typeof CustomEvent === "function") {
      root.document.dispatchEvent(new CustomEvent("pushgateway:ready", {detail: root.PushGateway}));
    }
  }
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  // The protocol's facts (codes, limits, names, defaults), each defined once in Python.
  // facts:begin
  // Generated from pushgateway/constants.py by `./dev facts`; do not edit.
  const FACTS = {
    version: 2,
    closeCodes: {POLICY_VIOLATION: 4008, MESSAGE_TOO_BIG: 4009, TRY_AGAIN_LATER: 4013},
    policyCloses: [4008, 4009],
    errorCodes: {
      INVALID_JSON: "invalid_json",
      INVALID_FRAME: "invalid_frame",
      UNKNOWN_TYPE: "unknown_type",
      INVALID_CHANNEL: "invalid_channel",
      INVALID_POSITION: "invalid_position",
      FRAME_TOO_LARGE: "frame_too_large",
      BINARY_FRAME: "binary_frame",
      NOT_SUBSCRIBED: "not_subscribed",
      FORBIDDEN: "forbidden",
      TOO_MANY_SUBSCRIPTIONS: "too_many_subscriptions",
      UNAVAILABLE: "unavailable",
      RATE_LIMITED: "rate_limited",
    },
    channelPattern: "[A-Za-z0-9._-]{1,100}",
    maxPositionsPerRequest: 100,
    clientHeader: "X-PushGateway-Client",
    clientField: "pushgateway_client",
    bayeuxDot: "~",
    defaults: {
      url: "/ws/pushgateway/",
      positionsUrl: "/pushgateway/positions/",
      throttle: 500,
      pollDown: 5000,
      pollUp: 300000,
    },
  };
  // facts:end

  const DEFAULTS = Object.assign({}, FACTS.defaults, {
    backoffInitial: 1000,
    backoffMax: 30000,
    stableAfter: 10000, // a connection up this long resets the backoff
    pingInterval: 25000, // keeps proxies from idling the socket out
    pongTimeout: 10000, // no pong by then: the socket is dead, reconnect
    checkAfterSubscribe: 1500, // an early ping lets a proxied server check positions again
    resyncGrace: 500, // ms a resync from the server waits for hints still on their way
    ignoreOwn: true, // skip hints caused by this page's own requests (see clientId)
    positionTtl: null, // ms the server remembers an idle channel (see positions.py)
    positions: {}, // channel -> position, rendered by the view (pushgateway.watch)
    tokens: {}, // channel -> token for private channels, rendered likewise
  });

  // How a page's requests say which page made them, so the hints they cause can skip it.
  const CLIENT_HEADER = FACTS.clientHeader;
  const CLIENT_FIELD = FACTS.clientField;

  function newClientId(random) {
    const bytes = new Uint8Array(12);
    if (globalThis.crypto && globalThis.crypto.getRandomValues) {
      globalThis.crypto.getRandomValues(bytes);
    } else {
      bytes.forEach((_, i) => (bytes[i] = Math.floor(random() * 256)));
    }
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // Close codes after which reconnecting at once would only be refused again.
  const POLICY_CLOSES = FACTS.policyCloses;
  const ERRORS = FACTS.errorCodes;
  const STRENGTH = {message: 1, poll: 2, resync: 3};
  const CHANNEL_RE = new RegExp("^(?:" + FACTS.channelPattern + ")$");
  const MAX_URL = 4000;

  function isPosition(p) {
    return p !== null && typeof p === "object" && typeof p.epoch === "string" &&
      Number.isInteger(p.seq);
  }

  // Whether a page that knows `known` has missed what `p` records.
  function behind(known, p) {
    return !known || known.epoch !== p.epoch || known.seq < p.seq;
  }

  // Whether `p` is the very next hint after `known` (the first of a fresh epoch follows the
  // start position, where nothing was published).
  function follows(known, p) {
    if (known.epoch === p.epoch) return p.seq === known.seq + 1;
    return known.epoch === "" && known.seq === 0 && p.seq === 1;
  }

  // The configuration {% pushgateway_script %} rendered into `doc`, or {} where there is none.
  function renderedConfig(doc) {
    const node = doc && doc.getElementById ? doc.getElementById("pushgateway-config") : null;
    if (!node) return {};
    try {
      const config = JSON.parse(node.textContent);
      return config !== null && typeof config === "object" ? config : {};
    } catch (error) {
      console.error("PushGateway: #pushgateway-config is not valid JSON", error);
      return {};
    }
  }

  // A client configured by DEFAULTS, then the page's rendered configuration (in the document
  // of `options.window`, or the global one), then `options`.
  function createClient(options) {
    options = options || {};
    const doc = options.window ? options.window.document : globalThis.document;
    return newClient(Object.assign({}, DEFAULTS, renderedConfig(doc), options));
  }

  function newClient(config) {
    // Time and transport are looked up at call time so tests can inject fakes.
    const env = {
      setTimeout: (fn, ms) => (config.setTimeout || globalThis.setTimeout)(fn, ms),
      clearTimeout: (id) => (config.clearTimeout || globalThis.clearTimeout)(id),
      now: () => (config.now || Date.now)(),
      random: () => (config.random || Math.random)(),
      WebSocket: () => config.WebSocket || globalThis.WebSocket,
      fetch: (url, init) => (config.fetch || globalThis.fetch)(url, init),
    };

    let state = "idle";
    let socket = null;
    let attempt = 0; // failed connection attempts since a connection last stayed up
    let reconnectTimer = null;
    let stableTimer = null;
    let pingTimer = null;
    let pingAt = Infinity;
    let pongTimer = null;
    let pollTimer = null;
    let contactLost = env.now(); // positions are known complete up to this moment
    const stateListeners = new Set();
    // name -> {name, subscriptions: Set, live, position, token, refused, requested, nextPoll}
    const channels = new Map();
    let fayeClient = null; // legacy Fanout.io realm mode (transport "faye")
    let fayeLoading = null;
    const owed = new Set(); // channels whose polls a hidden tab skipped
    const clientId = config.clientId || newClientId(env.random);

    function setState(next) {
      if (next === state) return;
      const previous = state;
      state = next;
      if (previous === "connected") contactLost = env.now();
      if (next !== "connected") {
        for (const entry of channels.values()) setLive(entry, false);
      }
      for (const listener of Array.from(stateListeners)) {
        try {
          listener(next, previous);
        } catch (error) {
          console.error("PushGateway state listener failed", error);
        }
      }
    }

    function setLive(entry, live) {
      if (entry.live === live) return;
      entry.live = live;
      resetPoll(entry);
    }

    function notify(entry, reason, data) {
      for (const sub of entry.subscriptions) sub.event(reason, data === undefined ? null : data);
    }

    function send(frame) {
      if (socket && state === "connected") socket.send(JSON.stringify(frame));
    }

    function socketUrl() {
      const url = config.url;
      if (/^wss?:\/\//.test(url) || typeof location === "undefined") return url;
      return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + url;
    }

    function connect() {
      reconnectTimer = null;
      if (channels.size === 0) return setState("idle");
      setState("connecting");
      if (config.transport === "faye") return connectFaye();
      let ws;
      try {
        const WebSocketImpl = env.WebSocket();
        ws = new WebSocketImpl(socketUrl());
      } catch (error) {
        console.error("PushGateway could not open a WebSocket", error);
        return scheduleReconnect();
      }
      socket = ws;
      ws.onopen = () => {
        if (ws !== socket) return;
        stableTimer = env.setTimeout(() => {
          stableTimer = null;
          attempt = 0;
        }, config.stableAfter);
        forgetIfTooLongAway();
        setState("connected");
        for (const entry of channels.values()) subscribeFrame(entry);
        schedulePing(config.pingInterval);
      };
      ws.onmessage = (event) => {
        if (ws === socket) receive(event.data);
      };
      ws.onclose = (event) => {
        if (ws !== socket) return;
        socket = null;
        stopPing();
        if (stableTimer !== null) env.clearTimeout(stableTimer);
        stableTimer = null;
        if (event && POLICY_CLOSES.includes(event.code)) {
          console.warn("PushGateway: the server closed the connection", event.code, event.reason);
          attempt = Math.max(attempt, Math.ceil(Math.log2(config.backoffMax / config.backoffInitial)));
        }
        scheduleReconnect();
      };
      ws.onerror = () => {}; // onclose follows and does the work
    }

    // A channel idle for longer than the server remembers it reads as "nothing published"
    // again: after so long away, a page cannot tell that from what it saw, so it refetches.
    function forgetIfTooLongAway() {
      if (config.positionTtl && env.now() - contactLost > config.positionTtl) {
        for (const entry of channels.values()) entry.position = null;
      }
    }

    function scheduleReconnect() {
      if (channels.size === 0) return setState("idle");
      setState("waiting");
      // Equal jitter: half the capped exponential delay, plus a random half.
      const cap = Math.min(config.backoffMax, config.backoffInitial * 2 ** attempt);
      attempt += 1;
      const delay = cap / 2 + env.random() * (cap / 2);
      reconnectTimer = env.setTimeout(connect, delay);
    }

    function disconnect() {
      if (reconnectTimer !== null) env.clearTimeout(reconnectTimer);
      if (stableTimer !== null) env.clearTimeout(stableTimer);
      if (pollTimer !== null) env.clearTimeout(pollTimer);
      reconnectTimer = stableTimer = pollTimer = null;
      stopPing();
      if (fayeClient) fayeClient.disconnect();
      fayeClient = null;
      const ws = socket;
      socket = null;
      if (ws) ws.close(1000);
      attempt = 0;
      setState("idle");
    }

    function schedulePing(delay) {
      if (pingTimer !== null) env.clearTimeout(pingTimer);
      pingAt = env.now() + delay;
      pingTimer = env.setTimeout(() => {
        pingTimer = null;
        pingAt = Infinity;
        send({type: "ping"});
        if (pongTimer === null) {
          pongTimer = env.setTimeout(() => {
            pongTimer = null;
            if (socket) socket.close(4000, "no pong");
          }, config.pongTimeout);
        }
      }, delay);
    }

    function stopPing() {
      if (pingTimer !== null) env.clearTimeout(pingTimer);
      if (pongTimer !== null) env.clearTimeout(pongTimer);
      pingTimer = pongTimer = null;
      pingAt = Infinity;
    }

    function subscribeFrame(entry) {
      if (config.transport === "faye") return fayeSubscribe(entry);
      const frame = {type: "subscribe", channel: entry.name};
      if (entry.position) frame.since = entry.position;
      if (entry.token) frame.token = entry.token;
      entry.requested = state === "connected";
      send(frame);
    }

    function receive(text) {
      let frame;
      try {
        frame = JSON.parse(text);
      } catch (error) {
        return console.warn("PushGateway: ignored a frame that is not JSON", text);
      }
      if (frame !== null && typeof frame === "object") handleFrame(frame);
    }

    function handleFrame(frame) {
      const entry = channels.get(frame.channel);
      if (frame.type === "pong") {
        if (pongTimer !== null) env.clearTimeout(pongTimer);
        pongTimer = null;
        if (pingTimer === null) schedulePing(config.pingInterval);
      } else if (frame.type === "subscribed" && entry) {
        confirmed(entry, frame.position);
        // Behind a proxy, a hint published while it set up the subscription can be lost;
        // the server checks positions on the connection's next frame: send one soon.
        if (pingAt - env.now() > config.checkAfterSubscribe) {
          schedulePing(config.checkAfterSubscribe);
        }
      } else if (frame.type === "message" && entry) {
        const own = config.ignoreOwn && frame.client !== undefined && frame.client === clientId;
        message(entry, frame.position, frame.data, own);
      } else if (frame.type === "resync" && entry) {
        resync(entry, frame.position);
      } else if (frame.type === "error") {
        refused(entry, frame);
      }
    }

    // The server confirmed a subscription at position `p`: resync only if the page is
    // behind it (or cannot tell).
    function confirmed(entry, p) {
      entry.refused = null;
      setLive(entry, true);
      if (!isPosition(p)) return notify(entry, "resync");
      if (behind(entry.position, p)) {
        entry.position = p;
        notify(entry, "resync");
      }
    }

    // A hint at position `p`; `own` when this page's own request caused it (the page has
    // what it wrote: only a gap before it is news).
    function message(entry, p, data, own) {
      if (!isPosition(p) || !entry.position) {
        // Before the subscription is confirmed the confirmation decides what was missed.
        if (isPosition(p) && entry.live) entry.position = p;
        return own || notify(entry, "message", data);
      }
      const known = entry.position;
      if (known.epoch === p.epoch && p.seq <= known.seq) return; // seen already
      entry.position = p;
      if (!follows(known, p)) notify(entry, "resync", data);
      else if (!own) notify(entry, "message", data);
    }

    // The server says hints on this channel may have been lost, up to position `p`. A hint
    // still on its way may yet explain the move: wait a moment before refetching.
    function resync(entry, p) {
      if (!isPosition(p)) return notify(entry, "resync");
      if (entry.position && !behind(entry.position, p)) return; // already there
      env.setTimeout(() => {
        if (channels.get(entry.name) !== entry || !behind(entry.position, p)) return;
        entry.position = p;
        notify(entry, "resync");
      }, config.resyncGrace);
    }

    function refused(entry, frame) {
      console.warn("PushGateway server error:", frame.code, frame.message, frame.channel);
      if (!entry) return;
      setLive(entry, false);
      entry.refused = frame.code;
      entry.requested = false;
      if (frame.code === ERRORS.UNAVAILABLE || frame.code === ERRORS.RATE_LIMITED) {
        // The server could not join the channel just now, or this connection asked for
        // too many too fast: ask again a little later (when it says, if it says).
        const wait = frame.code === ERRORS.RATE_LIMITED && frame.retry_after > 0 ? frame.retry_after * 1000 : config.pollDown;
        env.setTimeout(() => {
          if (channels.get(entry.name) === entry && !entry.live) subscribeFrame(entry);
        }, wait);
      }
      if (frame.code === ERRORS.FORBIDDEN) renewToken(entry);
      // too_many_subscriptions and forbidden are answers: the channel is checked by
      // polling its position instead, and not asked for again on this connection.
    }

    // A private channel's token was refused (expired, or its key rotated away): ask the
    // page's getToken hook once for a fresh one, and subscribe with it if it is new.
    function renewToken(entry) {
      const getToken = entry.getToken || config.getToken;
      if (!getToken || entry.renewing) return;
      entry.renewing = true;
      const stale = entry.token;
      Promise.resolve()
        .then(() => getToken(entry.name))
        .then(
          (token) => {
            entry.renewing = false;
            if (channels.get(entry.name) !== entry || !token || token === stale) return;
            entry.token = token;
            subscribeFrame(entry);
          },
          (error) => {
            entry.renewing = false;
            console.warn("PushGateway: getToken failed for " + entry.name, error);
          }
        );
    }

    // Polling: one request per page for every channel that is due, whatever their number.

    function interval(entry) {
      return entry.live ? config.pollUp : config.pollDown;
    }

    function resetPoll(entry) {
      entry.nextPoll = env.now() + interval(entry);
      schedulePoll();
    }

    function schedulePoll() {
      if (pollTimer !== null) env.clearTimeout(pollTimer);
      pollTimer = null;
      let next = Infinity;
      for (const entry of channels.values()) {
        if (interval(entry) > 0) next = Math.min(next, entry.nextPoll);
      }
      if (next !== Infinity) pollTimer = env.setTimeout(poll, Math.max(0, next - env.now()));
    }

    function poll() {
      pollTimer = null;
      const now = env.now();
      const due = [];
      for (const entry of channels.values()) {
        const every = interval(entry);
        // Channels due within the next second ride along: one request, not several.
        if (every > 0 && entry.nextPoll - now <= Math.min(1000, every / 2)) {
          entry.nextPoll = now + every;
          due.push(entry);
        }
      }
      schedulePoll();
      if (!due.length) return;
      if (isHidden()) {
        // Nobody sees a hidden tab: its checks wait until it is shown again.
        due.forEach((entry) => owed.add(entry));
        return;
      }
      check(due, "poll");
    }

    function isHidden() {
      const doc = win && win.document;
      return Boolean(doc && doc.visibilityState === "hidden");
    }

    // Shown again: one request checks what the hidden tab's polls skipped.
    function shown() {
      wake();
      const entries = Array.from(owed).filter((entry) => channels.get(entry.name) === entry);
      owed.clear();
      if (entries.length) check(entries, "poll");
    }

    // The requests that ask about `entries`: [{url, entries}], each URL under MAX_URL
    // characters and for at most FACTS.maxPositionsPerRequest channels (the view refuses more).
    function positionsRequests(entries) {
      const requests = [];
      let current = null;
      for (const entry of entries) {
        const item = entry.token ? entry.name + ":" + entry.token : entry.name;
        const param = "c=" + encodeURIComponent(item);
        const full = current !== null && (current.url.length + param.length + 1 > MAX_URL ||
          current.entries.length >= FACTS.maxPositionsPerRequest);
        if (current === null || full) {
          const base = config.positionsUrl;
          current = {url: base + (base.includes("?") ? "&" : "?") + param, entries: [entry]};
          requests.push(current);
        } else {
          current.url += "&" + param;
          current.entries.push(entry);
        }
      }
      return requests;
    }

    // Ask the positions view where `entries` are; call back `reason` for each that moved,
    // or for all of them when the answer cannot be had.
    function check(entries, reason) {
      if (!config.positionsUrl) return entries.forEach((entry) => notify(entry, reason));
      for (const request of positionsRequests(entries)) {
        const started = env.now();
        Promise.resolve()
          .then(() => env.fetch(request.url, {headers: {Accept: "application/json"}}))
          .then((response) => {
            if (!response.ok) throw new Error("HTTP " + response.status);
            return response.json();
          })
          .then(
            (body) => {
              if (state !== "connected") contactLost = started;
              for (const entry of request.entries) checked(entry, body, reason);
            },
            (error) => {
              console.warn("PushGateway: cannot check positions:", error.message || error);
              for (const entry of request.entries) {
                if (channels.get(entry.name) === entry) notify(entry, reason);
              }
            }
          );
      }
    }

    function checked(entry, body, reason) {
      if (channels.get(entry.name) !== entry) return;
      if (body.errors && body.errors[entry.name] === ERRORS.FORBIDDEN) return renewToken(entry);
      const p = body.positions ? body.positions[entry.name] : undefined;
      if (!isPosition(p)) return notify(entry, reason); // cannot be checked now
      if (behind(entry.position, p)) {
        entry.position = p;
        notify(entry, reason);
      }
    }

    // Legacy Fanout.io realm mode: the Faye/Bayeux client Fanout serves, loaded on first
    // subscribe with Subresource Integrity; its messages are our `message` frames. Faye
    // confirms no positions, so each (re)confirmed subscription asks the positions view.
    function loadFaye() {
      if (globalThis.Faye) return Promise.resolve(globalThis.Faye);
      if (!fayeLoading) {
        fayeLoading = new Promise((resolve, reject) => {
          const script = document.createElement("script");
          script.src = config.fayeScript;
          script.integrity = config.fayeIntegrity;
          script.crossOrigin = "anonymous";
          script.onload = () => resolve(globalThis.Faye);
          script.onerror = () => {
            script.remove();
            fayeLoading = null;
            reject(new Error("could not load " + config.fayeScript));
          };
          document.head.appendChild(script);
        });
      }
      return fayeLoading;
    }

    function connectFaye() {
      loadFaye().then(
        (Faye) => {
          if (channels.size === 0) return setState("idle");
          if (fayeClient === null) {
            fayeClient = new Faye.Client(config.fayeUrl, {transportMode: "fallback"});
            fayeClient.on("transport:down", () => setState("waiting"));
            fayeClient.on("transport:up", () => {
              setState("connected");
              // Faye renews its subscriptions itself: check what moved meanwhile.
              const ready = Array.from(channels.values()).filter((entry) => entry.fayeReady);
              ready.forEach((entry) => setLive(entry, true));
              if (ready.length) check(ready, "resync");
            });
          }
          for (const entry of channels.values()) subscribeFrame(entry);
        },
        (error) => {
          console.error("PushGateway:", error.message);
          scheduleReconnect();
        }
      );
    }

    // Confirmations that arrive together are checked with one request.
    let toCheck = null;
    function checkSoon(entry) {
      if (toCheck === null) {
        toCheck = [];
        Promise.resolve().then(() => {
          const entries = toCheck.filter((e) => channels.get(e.name) === e);
          toCheck = null;
          check(entries, "resync");
        });
      }
      toCheck.push(entry);
    }

    function fayeSubscribe(entry) {
      if (fayeClient === null || entry.faye) return;
      entry.faye = fayeClient.subscribe("/" + entry.name.replaceAll(".", FACTS.bayeuxDot), handleFrame);
      entry.faye.then(
        () => {
          entry.fayeReady = true;
          setState("connected");
          setLive(entry, true);
          checkSoon(entry);
        },
        (error) => {
          entry.faye = null;
          handleFrame({type: "error", code: ERRORS.UNAVAILABLE, message: String(error), channel: entry.name});
        }
      );
    }

    function Subscription(channel, callback, opts) {
      this.channel = channel;
      this.callback = callback;
      this.throttle = opts.throttle !== undefined ? opts.throttle : config.throttle;
      this.windowTimer = null; // throttle window in progress
      this.pending = null; // {reason, data, count} waiting for the trailing edge
      this.active = true;
    }

    Subscription.prototype.event = function (reason, data) {
      if (!this.active) return;
      const pending = this.pending;
      if (pending) {
        pending.count += 1;
        if (STRENGTH[reason] > STRENGTH[pending.reason]) pending.reason = reason;
        if (data !== null) pending.data = data;
      } else {
        this.pending = {reason: reason, data: data, count: 1};
      }
      if (this.windowTimer === null) this.fire();
    };

    Subscription.prototype.fire = function () {
      const event = this.pending;
      this.pending = null;
      this.windowTimer = null;
      if (!event || !this.active) return;
      this.windowTimer = env.setTimeout(() => this.fire(), this.throttle);
      try {
        this.callback({
          channel: this.channel,
          reason: event.reason,
          data: event.data,
          count: event.count,
        });
      } catch (error) {
        console.error("PushGateway callback for " + this.channel + " failed", error);
      }
    };

    Subscription.prototype.stop = function () {
      this.active = false;
      if (this.windowTimer !== null) env.clearTimeout(this.windowTimer);
      this.windowTimer = this.pending = null;
    };

    function subscribe(channel, callback, opts) {
      if (typeof channel !== "string" || !CHANNEL_RE.test(channel)) {
        throw new TypeError("PushGateway: invalid channel name " + JSON.stringify(channel));
      }
      if (typeof callback !== "function") {
        throw new TypeError("PushGateway: subscribe needs a callback function");
      }
      opts = opts || {};
      const sub = new Subscription(channel, callback, opts);
      let entry = channels.get(channel);
      if (!entry) {
        const rendered = (config.positions || {})[channel];
        entry = {
          name: channel,
          subscriptions: new Set([sub]),
          live: false,
          position: isPosition(rendered) ? rendered : null,
          token: opts.token || (config.tokens || {})[channel],
          getToken: opts.getToken, // (channel) => token or a promise of one
          refused: null,
          requested: false, // a subscribe went out on this connection and was not refused
          nextPoll: 0,
        };
        channels.set(channel, entry);
        resetPoll(entry);
        subscribeFrame(entry);
      } else {
        entry.subscriptions.add(sub);
        if (opts.token) entry.token = opts.token;
        if (opts.getToken) entry.getToken = opts.getToken;
      }
      if (state === "idle") connect();
      return function unsubscribe() {
        if (!sub.active) return;
        sub.stop();
        entry.subscriptions.delete(sub);
        if (entry.subscriptions.size === 0 && channels.get(channel) === entry) {
          channels.delete(channel);
          if (entry.faye) entry.faye.cancel();
          if (entry.requested) send({type: "unsubscribe", channel: channel});
          if (channels.size === 0) disconnect();
          else schedulePoll();
        }
      };
    }

    // Back online, or the tab shown again: do not sit out the rest of a long backoff.
    function wake() {
      if (state !== "waiting") return;
      if (reconnectTimer !== null) env.clearTimeout(reconnectTimer);
      connect();
    }
    const win = config.window || (typeof window !== "undefined" ? window : null);
    if (win && win.addEventListener) {
      win.addEventListener("online", wake);
      const doc = win.document;
      if (doc && doc.addEventListener) {
        doc.addEventListener("visibilitychange", () => {
          if (doc.visibilityState === "visible") shown();
        });
      }
    }

    function onStateChange(listener) {
      stateListeners.add(listener);
      return () => stateListeners.delete(listener);
    }

    function configure(overrides) {
      Object.assign(config, overrides || {});
      return client;
    }

    // fetch() that says which page made the request, so the hints it causes skip this page.
    function fetchWithId(input, init) {
      const headers = new Headers((init && init.headers) || {});
      headers.set(CLIENT_HEADER, clientId);
      return env.fetch(input, Object.assign({}, init, {headers: headers}));
    }

    const client = {
      subscribe: subscribe,
      onStateChange: onStateChange,
      configure: configure,
      fetch: fetchWithId,
      clientId: clientId,
      get state() {
        return state;
      },
    };
    return client;
  }

  // The page's client: the configuration rendered into `doc`, and its forms' client fields.
  function fromDocument(doc) {
    const client = newClient(Object.assign({}, DEFAULTS, renderedConfig(doc)));
    // Forms with {% pushgateway_client_field %} say which page posted them, like fetch().
    if (doc && doc.addEventListener) {
      doc.addEventListener(
        "submit",
        (event) => {
          const form = event.target;
          if (!form || !form.querySelectorAll) return;
          for (const input of form.querySelectorAll(`input[name="${CLIENT_FIELD}"]`)) {
            input.value = client.clientId;
          }
        },
        true
      );
    }
    return client;
  }

  return {
    createClient: createClient,
    fromDocument: fromDocument,
    DEFAULTS: DEFAULTS,
    FACTS: FACTS,
    CLIENT_HEADER: CLIENT_HEADER,
    CLIENT_FIELD: CLIENT_FIELD,
  };
});
