/*
 * django-pushgateway browser module. One file, no build step, no dependencies.
 *
 *   const unsubscribe = PushGateway.subscribe("comments-7", ({channel, reason, data, count}) => {
 *     refetchComments();            // reason: "message" | "resync" | "poll"
 *   }, {throttle: 500});
 *   PushGateway.onStateChange((state, previous) => ...);
 *
 * Per subscription: callbacks are throttled (leading and trailing edge, so the last hint is
 * never lost) and a poll fires while nothing else does (every pollDown ms while the channel
 * is not live, every pollUp ms while it is). One socket per page, opened on first subscribe,
 * reconnected with capped exponential backoff and jitter; after a reconnect every
 * subscription is renewed and fires "resync", since hints may have been missed meanwhile.
 *
 * Connection states: "idle" (no subscriptions, no socket), "connecting", "connected",
 * "waiting" (backing off before the next attempt).
 */
(function (root, factory) {
  "use strict";
  const api = factory();
  if (typeof module === "object" && module.exports) {
    module.exports = api;
  } else {
    root.PushGateway = api.fromDocument(root.document);
  }
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  const DEFAULTS = {
    url: "/ws/pushgateway/",
    throttle: 500, // ms between callbacks of one subscription
    pollDown: 5000, // ms between polls while the channel is not live
    pollUp: 300000, // ms between polls while it is
    backoffInitial: 1000,
    backoffMax: 30000,
    pingInterval: 25000, // keeps proxies from idling the socket out
    pongTimeout: 10000, // no pong by then: the socket is dead, reconnect
  };

  function createClient(options) {
    const config = Object.assign({}, DEFAULTS, options || {});
    // Time and transport are looked up at call time so tests can inject fakes.
    const env = {
      setTimeout: (fn, ms) => (config.setTimeout || globalThis.setTimeout)(fn, ms),
      clearTimeout: (id) => (config.clearTimeout || globalThis.clearTimeout)(id),
      random: () => (config.random || Math.random)(),
      WebSocket: () => config.WebSocket || globalThis.WebSocket,
    };

    let state = "idle";
    let socket = null;
    let attempt = 0; // failed connection attempts since the last success
    let reconnectTimer = null;
    let pingTimer = null;
    let pongTimer = null;
    const stateListeners = new Set();
    const channels = new Map(); // name -> {subscriptions: Set, live: bool}
    const seenIds = [];
    let fayeClient = null; // legacy Fanout.io realm mode (transport "faye")
    let fayeLoading = null;

    function setState(next) {
      if (next === state) return;
      const previous = state;
      state = next;
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
      for (const sub of entry.subscriptions) sub.schedulePoll();
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
        attempt = 0;
        setState("connected");
        for (const [name, entry] of channels) subscribeFrame(name, entry);
        schedulePing();
      };
      ws.onmessage = (event) => {
        if (ws === socket) receive(event.data);
      };
      ws.onclose = () => {
        if (ws !== socket) return;
        socket = null;
        stopPing();
        scheduleReconnect();
      };
      ws.onerror = () => {}; // onclose follows and does the work
    }

    function scheduleReconnect() {
      if (channels.size === 0) return setState("idle");
      // Hints sent while we are away are lost: every subscription resyncs once live again.
      for (const entry of channels.values()) {
        for (const sub of entry.subscriptions) sub.missedPush = true;
      }
      setState("waiting");
      // Equal jitter: half the capped exponential delay, plus a random half.
      const cap = Math.min(config.backoffMax, config.backoffInitial * 2 ** attempt);
      attempt += 1;
      const delay = cap / 2 + env.random() * (cap / 2);
      reconnectTimer = env.setTimeout(connect, delay);
    }

    function disconnect() {
      if (reconnectTimer !== null) env.clearTimeout(reconnectTimer);
      reconnectTimer = null;
      stopPing();
      if (fayeClient) fayeClient.disconnect();
      fayeClient = null;
      const ws = socket;
      socket = null;
      if (ws) ws.close(1000);
      attempt = 0;
      setState("idle");
    }

    function schedulePing() {
      stopPing();
      pingTimer = env.setTimeout(() => {
        send({type: "ping"});
        pongTimer = env.setTimeout(() => {
          if (socket) socket.close(4000, "no pong");
        }, config.pongTimeout);
      }, config.pingInterval);
    }

    function stopPing() {
      if (pingTimer !== null) env.clearTimeout(pingTimer);
      if (pongTimer !== null) env.clearTimeout(pongTimer);
      pingTimer = pongTimer = null;
    }

    function subscribeFrame(name, entry) {
      if (config.transport === "faye") return fayeSubscribe(name, entry);
      const frame = {type: "subscribe", channel: name};
      for (const sub of entry.subscriptions) if (sub.token) frame.token = sub.token;
      send(frame);
    }

    function receive(text) {
      let frame;
      try {
        frame = JSON.parse(text);
      } catch (error) {
        return console.warn("PushGateway: ignored a frame that is not JSON", text);
      }
      handleFrame(frame);
    }

    function handleFrame(frame) {
      const entry = channels.get(frame.channel);
      if (frame.type === "pong") {
        schedulePing();
      } else if (frame.type === "subscribed" && entry) {
        setLive(entry, true);
        for (const sub of entry.subscriptions) {
          if (sub.missedPush) sub.event("resync", null);
          sub.missedPush = false;
        }
      } else if (frame.type === "message" && entry) {
        if (frame.id !== undefined && seenIds.includes(frame.id)) return;
        seenIds.push(frame.id);
        if (seenIds.length > 200) seenIds.shift();
        for (const sub of entry.subscriptions) sub.event("message", frame.data);
      } else if (frame.type === "error") {
        console.warn("PushGateway server error:", frame.code, frame.message, frame.channel);
        if (entry) setLive(entry, false);
        if (entry && frame.code === "unavailable") {
          // The server could not join the channel just now; ask again a little later.
          for (const sub of entry.subscriptions) sub.missedPush = true;
          env.setTimeout(() => {
            if (channels.get(frame.channel) === entry) subscribeFrame(frame.channel, entry);
          }, config.pollDown);
        }
      }
    }

    // Legacy Fanout.io realm mode: the Faye/Bayeux client Fanout serves, loaded on first
    // subscribe with Subresource Integrity; its messages are our `message` frames.
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
            fayeClient.on("transport:down", () => {
              for (const entry of channels.values()) {
                for (const sub of entry.subscriptions) sub.missedPush = true;
              }
              setState("waiting");
            });
            fayeClient.on("transport:up", () => {
              setState("connected");
              // Faye renews its subscriptions itself; treat them as confirmed again.
              for (const [name, entry] of channels) {
                if (entry.fayeReady) handleFrame({type: "subscribed", channel: name});
              }
            });
          }
          for (const [name, entry] of channels) subscribeFrame(name, entry);
        },
        (error) => {
          console.error("PushGateway:", error.message);
          scheduleReconnect();
        }
      );
    }

    function fayeSubscribe(name, entry) {
      if (fayeClient === null || entry.faye) return;
      entry.faye = fayeClient.subscribe("/" + name, handleFrame);
      entry.faye.then(
        () => {
          entry.fayeReady = true;
          setState("connected");
          handleFrame({type: "subscribed", channel: name});
        },
        (error) => {
          entry.faye = null;
          handleFrame({type: "error", code: "unavailable", message: String(error), channel: name});
        }
      );
    }

    function Subscription(channel, callback, opts) {
      this.channel = channel;
      this.callback = callback;
      this.throttle = opts.throttle !== undefined ? opts.throttle : config.throttle;
      this.pollDown = opts.pollDown !== undefined ? opts.pollDown : config.pollDown;
      this.pollUp = opts.pollUp !== undefined ? opts.pollUp : config.pollUp;
      this.token = opts.token;
      this.missedPush = false;
      this.windowTimer = null; // throttle window in progress
      this.pending = null; // {reason, data, count} waiting for the trailing edge
      this.pollTimer = null;
      this.active = true;
    }

    Subscription.prototype.event = function (reason, data) {
      if (!this.active) return;
      const count = this.pending ? this.pending.count + 1 : 1;
      this.pending = {reason: reason, data: data, count: count};
      if (this.windowTimer === null) this.fire();
    };

    Subscription.prototype.fire = function () {
      const event = this.pending;
      this.pending = null;
      this.windowTimer = null;
      if (!event || !this.active) return;
      this.windowTimer = env.setTimeout(() => this.fire(), this.throttle);
      this.schedulePoll();
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

    Subscription.prototype.schedulePoll = function () {
      if (this.pollTimer !== null) env.clearTimeout(this.pollTimer);
      this.pollTimer = null;
      if (!this.active) return;
      const entry = channels.get(this.channel);
      const interval = entry && entry.live ? this.pollUp : this.pollDown;
      if (interval > 0) this.pollTimer = env.setTimeout(() => this.event("poll", null), interval);
    };

    Subscription.prototype.stop = function () {
      this.active = false;
      if (this.pollTimer !== null) env.clearTimeout(this.pollTimer);
      if (this.windowTimer !== null) env.clearTimeout(this.windowTimer);
      this.pollTimer = this.windowTimer = this.pending = null;
    };

    function subscribe(channel, callback, opts) {
      if (typeof channel !== "string" || !/^[A-Za-z0-9._-]{1,100}$/.test(channel)) {
        throw new TypeError("PushGateway: invalid channel name " + JSON.stringify(channel));
      }
      if (typeof callback !== "function") {
        throw new TypeError("PushGateway: subscribe needs a callback function");
      }
      const sub = new Subscription(channel, callback, opts || {});
      let entry = channels.get(channel);
      if (!entry) {
        entry = {subscriptions: new Set(), live: false};
        channels.set(channel, entry);
        entry.subscriptions.add(sub);
        subscribeFrame(channel, entry);
      } else {
        entry.subscriptions.add(sub);
      }
      sub.schedulePoll();
      if (state === "idle") connect();
      return function unsubscribe() {
        if (!sub.active) return;
        sub.stop();
        entry.subscriptions.delete(sub);
        if (entry.subscriptions.size === 0 && channels.get(channel) === entry) {
          channels.delete(channel);
          if (entry.faye) entry.faye.cancel();
          send({type: "unsubscribe", channel: channel});
          if (channels.size === 0) disconnect();
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
          if (doc.visibilityState === "visible") wake();
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

    const client = {
      subscribe: subscribe,
      onStateChange: onStateChange,
      configure: configure,
      get state() {
        return state;
      },
    };
    return client;
  }

  function fromDocument(doc) {
    let config = {};
    const node = doc && doc.getElementById("pushgateway-config");
    if (node) {
      try {
        config = JSON.parse(node.textContent);
      } catch (error) {
        console.error("PushGateway: #pushgateway-config is not valid JSON", error);
      }
    }
    return createClient(config);
  }

  return {createClient: createClient, fromDocument: fromDocument, DEFAULTS: DEFAULTS};
});
