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
 * page, opened on first subscribe, reconnected with capped exponential backoff and jitter;
 * the tabs of one origin share one socket where the browser lets them (the shared connection:
 * createShareTable and createSharedTransport, just before newClient). Where the WebSocket is
 * refused (or cut young, twice), the same frames come over a stream: Server-Sent Events read
 * from a POSTed fetch(), remembered for the session (shared by the tabs the same way).
 *
 * Connection states: "idle" (no subscriptions, no socket), "connecting", "connected",
 * "waiting" (backing off before the next attempt).
 *
 * Live fragments (watchFragments, its own section before fromDocument): an element with a
 * data-pushgateway-channel attribute is subscribed while it is in the document and told of
 * each callback by a pushgateway:change DOM event, for htmx, Turbo or a plain listener.
 *
 * The file, top to bottom: positions (pure functions); createThrottle (one subscription's
 * callback window); createChannel (one channel's state: what the page knows, what a frame
 * means); createRefusals and createPageTokens (renewing refused tokens); the positions view
 * (positionsRequests, createChecker) and createPoller; the WebSocket transport
 * (createHeartbeat, createWebSocketTransport); the stream transport (createEventParser,
 * createStreamTransport); the Faye transport; the choice between them (createTransports);
 * the connection state machine (createBackoff, createStates, createConnection); and
 * newClient, which wires them into what createClient and fromDocument return.
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
    closeCodes: {
      POLICY_VIOLATION: 4008,
      MESSAGE_TOO_BIG: 4009,
      SERVICE_RESTART: 4012,
      TRY_AGAIN_LATER: 4013,
      TOO_MANY_CONNECTIONS: 4029,
    },
    policyCloses: [4008, 4009, 4029],
    restartCloses: [1012, 4012],
    noPongClose: 4000,
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
    privatePrefix: "private-",
    maxPositionsPerRequest: 100,
    streamIdle: 37500,
    streamRecheckHeader: "X-PushGateway-Recheck",
    clientHeader: "X-PushGateway-Client",
    clientField: "pushgateway_client",
    clientTagLength: 32,
    configElement: "pushgateway-config",
    fragmentAttributes: {
      channel: "data-pushgateway-channel",
      since: "data-pushgateway-since",
      token: "data-pushgateway-token",
      throttle: "data-pushgateway-throttle",
    },
    fragmentEvent: "pushgateway:change",
    bayeuxDot: "~",
    defaults: {
      url: "/ws/pushgateway/",
      positionsUrl: "/pushgateway/positions/",
      streamUrl: "/pushgateway/stream/",
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
    transport: "auto", // "websocket", falling back to "stream"; or either alone, or "faye"
    websocketRetry: 300000, // ms on the stream before WebSockets are tried again
    streamIdle: FACTS.streamIdle, // ms without a byte (keep-alives included): a dead stream
    restartDelay: 3000, // after a service-restart close: reconnect within this, at random
    pingInterval: 25000, // keeps proxies from idling the socket out
    pongTimeout: 10000, // no pong by then: the socket is dead, reconnect
    checkAfterSubscribe: 1500, // an early ping lets a proxied server check positions again
    resyncGrace: 500, // ms a resync from the server waits for hints still on their way
    ignoreOwn: true, // skip hints caused by this page's own requests (see clientId)
    share: true, // tabs of one origin share one connection (createSharedTransport)
    positionTtl: null, // ms the server remembers an idle channel (see positions.py)
    positions: {}, // channel -> position, rendered by the view (pushgateway.watch)
    tokens: {}, // channel -> token for private channels, rendered likewise
  });

  // How a page's requests say which page made them, so the hints they cause can skip it.
  const CLIENT_HEADER = FACTS.clientHeader;
  const CLIENT_FIELD = FACTS.clientField;

  // Close codes after which reconnecting at once would only be refused again.
  const POLICY_CLOSES = FACTS.policyCloses;
  // Close codes of a server that restarts on purpose (it drains): come back soon, with jitter.
  const RESTART_CLOSES = FACTS.restartCloses;
  const ERRORS = FACTS.errorCodes;
  const STRENGTH = {message: 1, poll: 2, resync: 3};
  const CHANNEL_RE = new RegExp("^(?:" + FACTS.channelPattern + ")$");

  // ---- Positions ({epoch, seq}): what a page knows of a channel ----

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

  // Whether `p` is behind `known` in the same epoch: the server's store went back (restored
  // from an older snapshot, a lagging replica promoted), so seqs the page saw are given again
  // to new hints. The page must start over from `p`, not take them for hints it saw.
  function wentBack(known, p) {
    return Boolean(known) && known.epoch === p.epoch && p.seq < known.seq;
  }

  // How many recent hints' ids a channel remembers, to tell a hint delivered twice (dropped)
  // from a new one at a seq the page passed (a new start).
  const RECENT_IDS = 32;

  // ---- Time and transport: from the config when given (tests inject fakes), else global ----

  function createEnv(config) {
    // Looked up at call time, so a fake installed later (or configure()) takes effect.
    return {
      setTimeout: (fn, ms) => (config.setTimeout || globalThis.setTimeout)(fn, ms),
      clearTimeout: (id) => (config.clearTimeout || globalThis.clearTimeout)(id),
      now: () => (config.now || Date.now)(),
      random: () => (config.random || Math.random)(),
      WebSocket: () => config.WebSocket || globalThis.WebSocket,
      // For tabs that share a connection (createSharedTransport).
      BroadcastChannel: () => config.BroadcastChannel || globalThis.BroadcastChannel,
      locks: () => config.locks || (globalThis.navigator && globalThis.navigator.locks),
      fetch: (url, init) => (config.fetch || globalThis.fetch)(url, init),
      // Web Crypto's SubtleCrypto: only in secure contexts (https:, localhost).
      subtle: () => (config.crypto || globalThis.crypto || {}).subtle,
    };
  }

  function newClientId(random) {
    const bytes = new Uint8Array(12);
    if (globalThis.crypto && globalThis.crypto.getRandomValues) {
      globalThis.crypto.getRandomValues(bytes);
    } else {
      bytes.forEach((_, i) => (bytes[i] = Math.floor(random() * 256)));
    }
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // What the server puts on the hints this client's requests cause: not its id (anyone who
  // reads a hint could send that id and have their edits skipped by this page) but the
  // start of the id's SHA-256 as hex, which only a page that knows the id can compute.
  // Resolves to null without Web Crypto (a plain-http page other than localhost): that page
  // then refetches after its own writes too.
  function clientTag(time, id) {
    const subtle = time.subtle();
    if (!subtle) return Promise.resolve(null);
    return Promise.resolve()
      .then(() => subtle.digest("SHA-256", new TextEncoder().encode(id)))
      .then((digest) => {
        const hex = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0"));
        return hex.join("").slice(0, FACTS.clientTagLength);
      })
      .catch(() => null);
  }

  // ---- Throttle: one subscription's callback window ----

  // At most one `fire({reason, data, count})` per `ms`, on the leading and the trailing edge,
  // so the last event is never lost. Events within a window fold into one call: the latest
  // data, the strongest reason (resync > poll > message) and how many there were.
  function createThrottle(time, ms, fire) {
    let timer = null; // a window in progress
    let pending = null; // {reason, data, count} waiting for the trailing edge
    let active = true;
    function flush() {
      const event = pending;
      pending = null;
      timer = null;
      if (!event || !active) return;
      timer = time.setTimeout(flush, ms);
      fire(event);
    }
    return {
      push(reason, data) {
        if (!active) return;
        if (pending) {
          pending.count += 1;
          if (STRENGTH[reason] > STRENGTH[pending.reason]) pending.reason = reason;
          if (data !== null) pending.data = data;
        } else {
          pending = {reason: reason, data: data, count: 1};
        }
        if (timer === null) flush();
      },
      stop() {
        active = false;
        if (timer !== null) time.clearTimeout(timer);
        timer = pending = null;
      },
    };
  }

  // ---- The client's parts ----
  // Each factory below takes `ctx`, the client's parts as newClient() wires them: config,
  // time (createEnv), channels (name -> createChannel), window, clientId, clientTag,
  // pageTokens, connection, poller, checker, refusals, transport() and frame(frame). Parts
  // reach each other through it at call time, so a test can hand one part a ctx with only
  // what that part uses.

  // ---- Channel: one channel's subscriptions and what the page knows of it ----

  // `init`: {position (rendered), token, getToken}. The channel turns each frame or positions
  // answer about it into callbacks: a hint that follows the known position is a "message",
  // a gap or a new epoch a "resync", a hint seen already nothing; a server position behind
  // the page's in the same epoch is a new start (one "resync", then the server's position).
  function createChannel(name, init, ctx) {
    const channel = {
      name: name,
      subscriptions: new Set(), // one throttle per subscribe()
      live: false, // subscribed and confirmed on the current connection
      position: isPosition(init.position) ? init.position : null,
      recent: new Map(), // seq -> id of the latest hints seen in the position's epoch
      heardAt: -Infinity, // when a hint last told the page the channel's position
      token: init.token,
      getToken: init.getToken, // (channel) => token or a promise of one
      requested: false, // a subscribe went out on this connection and was not refused
      renewing: false, // getToken is being asked for a fresh token
      unrenewable: undefined, // a refused token getToken could not replace
      nextPoll: 0, // when the poller checks it next
      current: () => ctx.channels.get(name) === channel,
      notify(reason, data) {
        const value = data === undefined ? null : data;
        for (const throttle of channel.subscriptions) throttle.push(reason, value);
      },
      setLive(live) {
        if (channel.live === live) return;
        channel.live = live;
        ctx.poller.reset(channel);
      },
      adopt: (p, id) => adopt(channel, p, id, ctx.time.now()),
      // The server is at `p`: call back `reason` if the page is behind it.
      caughtUp(p, reason) {
        if (!behind(channel.position, p)) return;
        channel.adopt(p);
        channel.notify(reason);
      },
      // The server says it is at `p` now: behind the page in the same epoch is a new start.
      told(p, reason) {
        if (!wentBack(channel.position, p)) return channel.caughtUp(p, reason);
        channel.adopt(p);
        channel.notify("resync");
      },
      // The server confirmed the subscription at `p`: resync if the page is behind, or cannot tell.
      confirmed(p) {
        channel.setLive(true);
        if (isPosition(p)) channel.told(p, "resync");
        else channel.notify("resync");
      },
      message: (p, data, own, id) => channelMessage(channel, p, data, own, id),
      // The server says hints may have been lost, up to `p`. A hint still on its way may yet
      // explain the move: wait a moment before refetching.
      resync(p) {
        if (!isPosition(p)) return channel.notify("resync");
        if (wentBack(channel.position, p)) return channel.told(p);
        if (!behind(channel.position, p)) return; // already there
        const grace = ctx.config.resyncGrace;
        ctx.time.setTimeout(() => channel.current() && channel.caughtUp(p, "resync"), grace);
      },
    };
    return channel;
  }

  // What the page knows of `channel` is `p` now, reached at `now` by the hint `id` when one
  // brought it there (its id is remembered while the page stays in that epoch).
  function adopt(channel, p, id, now) {
    const known = channel.position;
    if (!known || known.epoch !== p.epoch || p.seq <= known.seq) channel.recent.clear();
    channel.position = p;
    if (id === undefined) return;
    channel.heardAt = now;
    channel.recent.set(p.seq, id);
    if (channel.recent.size > RECENT_IDS) channel.recent.delete(channel.recent.keys().next().value);
  }

  // A hint `id` at `p` on `channel`; `own` when this page's own request caused it (the page has
  // what it wrote: only a gap before it is news). A hint the page saw (the same id) is dropped,
  // or only moves the position when a publisher's retry gave it the next seq.
  function channelMessage(channel, p, data, own, id) {
    if (!isPosition(p) || !channel.position) {
      // Before the subscription is confirmed the confirmation decides what was missed.
      if (isPosition(p) && channel.live) channel.adopt(p, id);
      return own || channel.notify("message", data);
    }
    const known = channel.position;
    const repeat = id !== undefined && Array.from(channel.recent.values()).includes(id);
    if (known.epoch === p.epoch && p.seq <= known.seq) {
      if (repeat) return; // delivered twice
      channel.adopt(p, id); // another hint at a seq the page passed: a new start
      return channel.notify("resync", data);
    }
    channel.adopt(p, id);
    if (!follows(known, p)) channel.notify("resync", data);
    else if (!own && !repeat) channel.notify("message", data);
  }

  // ---- Refusals: subscriptions the server says no to ----

  // too_many_subscriptions and forbidden are answers: the channel is not asked for again on
  // this connection and the poller checks it instead (a forbidden token is renewed through
  // getToken). unavailable and rate_limited are asked again a little later.
  function createRefusals(ctx) {
    function refused(channel, frame) {
      console.warn("PushGateway server error:", frame.code, frame.message, frame.channel);
      if (!channel) return;
      channel.setLive(false);
      channel.requested = false;
      if (frame.code === ERRORS.UNAVAILABLE || frame.code === ERRORS.RATE_LIMITED) {
        // The server could not join the channel just now, or this connection asked for too
        // many too fast: ask again after pollDown, or when it says.
        const said = frame.code === ERRORS.RATE_LIMITED && frame.retry_after > 0;
        ctx.time.setTimeout(() => {
          if (channel.current() && !channel.live) ctx.transport().subscribe(channel);
        }, said ? frame.retry_after * 1000 : ctx.config.pollDown);
      }
      if (frame.code === ERRORS.FORBIDDEN) renewToken(channel);
    }

    // A private channel's token was refused (expired, or its key rotated away): ask the
    // page's getToken hook (by default: the page itself, fetched again) once for a fresh one,
    // and subscribe with it if it is new. A token the hook could not replace is not asked
    // about again: a page whose user lost access stops asking.
    function renewToken(channel) {
      const getToken = channel.getToken || ctx.config.getToken || ctx.pageTokens;
      if (!getToken || channel.renewing || channel.token === channel.unrenewable) return;
      channel.renewing = true;
      const stale = channel.token;
      Promise.resolve()
        .then(() => getToken(channel.name))
        .then(
          (token) => {
            channel.renewing = false;
            if (!token || token === stale) channel.unrenewable = stale;
            if (!channel.current() || !token || token === stale) return;
            channel.token = token;
            ctx.transport().subscribe(channel);
          },
          (error) => {
            channel.renewing = false;
            console.warn("PushGateway: getToken failed for " + channel.name, error);
          }
        );
    }
    return {refused: refused, renewToken: renewToken};
  }

  // The default getToken: fetch this page again (with its cookies, past the HTTP cache) and
  // take the channel's token from the configuration its view renders. The view decides again
  // whether this user may watch the channel; a page that no longer renders the token gives
  // none. Channels refused at the same moment share one fetch.
  function createPageTokens(ctx) {
    let pending = null;
    function fetchPage() {
      const win = ctx.window;
      if (!win || !win.location || !win.location.href) return Promise.resolve({});
      const init = {credentials: "same-origin", cache: "no-store", headers: {Accept: "text/html"}};
      return Promise.resolve()
        .then(() => ctx.time.fetch(win.location.href, init))
        .then((response) => (response.ok ? response.text() : ""))
        .then(renderedTokens);
    }
    return function getToken(channel) {
      if (pending === null) {
        pending = fetchPage();
        const done = () => (pending = null);
        pending.then(done, done);
      }
      return pending.then((tokens) => tokens[channel] || null);
    };
  }

  // The tokens in a page's HTML, from the configuration {% pushgateway_script %} renders
  // (json_script escapes "<", so the element's text ends at the first "<").
  function renderedTokens(html) {
    const at = html.indexOf('id="' + FACTS.configElement + '"');
    if (at < 0) return {};
    const start = html.indexOf(">", at) + 1;
    try {
      const config = JSON.parse(html.slice(start, html.indexOf("<", start)));
      const tokens = config !== null && typeof config === "object" ? config.tokens : null;
      return tokens !== null && typeof tokens === "object" ? tokens : {};
    } catch (error) {
      return {};
    }
  }

  // ---- Positions view: where channels are, asked over HTTP ----

  // The requests that ask `base` about `channels`: [{url, body, channels}], POSTs of
  // {channels: [names], tokens: {name: token}} (tokens never in a URL, which access logs
  // keep), each for at most FACTS.maxPositionsPerRequest channels (the view refuses more).
  function positionsRequests(base, channels) {
    const requests = [];
    for (let i = 0; i < channels.length; i += FACTS.maxPositionsPerRequest) {
      const part = channels.slice(i, i + FACTS.maxPositionsPerRequest);
      const body = {channels: part.map((channel) => channel.name), tokens: {}};
      for (const channel of part) if (channel.token) body.tokens[channel.name] = channel.token;
      requests.push({url: base, body: body, channels: part});
    }
    return requests;
  }

  // fetch()'s init for a positions request.
  function positionsInit(request) {
    const headers = {Accept: "application/json", "Content-Type": "application/json"};
    return {method: "POST", headers: headers, body: JSON.stringify(request.body)};
  }

  // check(channels, reason) asks the positions view where `channels` are and calls back
  // `reason` for each that moved, or for all of them when the answer cannot be had (no
  // positionsUrl, a failed request). soon(channel) checks with the others confirmed together.
  function createChecker(ctx) {
    let batch = null; // channels to check once the current task is done
    function check(channels, reason) {
      const base = ctx.config.positionsUrl;
      if (!base) return channels.forEach((channel) => channel.notify(reason));
      for (const request of positionsRequests(base, channels)) {
        const started = ctx.time.now();
        Promise.resolve()
          .then(() => ctx.time.fetch(request.url, positionsInit(request)))
          .then((response) => {
            if (!response.ok) throw new Error("HTTP " + response.status);
            return response.json();
          })
          .then(
            (body) => {
              ctx.connection.checkedAt(started);
              for (const channel of request.channels) answered(channel, body, reason, started);
            },
            (error) => {
              console.warn("PushGateway: cannot check positions:", error.message || error);
              for (const channel of request.channels) {
                if (channel.current()) channel.notify(reason);
              }
            }
          );
      }
    }
    function answered(channel, body, reason, started) {
      if (!channel.current()) return;
      const refused = body.errors && body.errors[channel.name] === ERRORS.FORBIDDEN;
      if (refused) return ctx.refusals.renewToken(channel); // its token: renew it
      const p = body.positions ? body.positions[channel.name] : undefined;
      if (!isPosition(p)) return channel.notify(reason); // cannot be checked now
      // Behind a hint that arrived after the request left: the answer is old, not the store.
      if (wentBack(channel.position, p) && channel.heardAt >= started) return;
      channel.told(p, reason);
    }
    function soon(channel) {
      if (batch === null) {
        batch = [];
        Promise.resolve().then(() => {
          const channels = batch.filter((c) => c.current());
          batch = null;
          check(channels, "resync");
        });
      }
      batch.push(channel);
    }
    return {check: check, soon: soon};
  }

  // ---- Poller: the positions view on a timer ----

  // A channel without a live subscription is checked every pollDown ms, one with a live
  // subscription every pollUp ms (a safety net); one timer and one request for every channel
  // due. A hidden tab does not poll (nobody would see the refetch): it owes those checks until
  // shown() says it is visible again.
  function createPoller(ctx) {
    let timer = null;
    const owed = new Set(); // channels whose checks a hidden tab skipped
    const every = (channel) => (channel.live ? ctx.config.pollUp : ctx.config.pollDown);
    function stop() {
      if (timer !== null) ctx.time.clearTimeout(timer);
      timer = null;
    }
    function schedule() {
      stop();
      let next = Infinity;
      for (const channel of ctx.channels.values()) {
        if (every(channel) > 0) next = Math.min(next, channel.nextPoll);
      }
      if (next !== Infinity) timer = ctx.time.setTimeout(poll, Math.max(0, next - ctx.time.now()));
    }
    function poll() {
      timer = null;
      const now = ctx.time.now();
      const due = [];
      for (const channel of ctx.channels.values()) {
        const interval = every(channel);
        // Channels due within the next second ride along: one request, not several.
        if (interval > 0 && channel.nextPoll - now <= Math.min(1000, interval / 2)) {
          channel.nextPoll = now + interval;
          due.push(channel);
        }
      }
      schedule();
      const doc = ctx.window && ctx.window.document;
      if (doc && doc.visibilityState === "hidden") due.forEach((channel) => owed.add(channel));
      else if (due.length) ctx.checker.check(due, "poll");
    }
    return {
      schedule: schedule,
      stop: stop,
      // The channel's interval starts now (it became live, or stopped being live).
      reset(channel) {
        channel.nextPoll = ctx.time.now() + every(channel);
        schedule();
      },
      // One request checks what the hidden tab's polls skipped.
      shown() {
        const channels = Array.from(owed).filter((channel) => channel.current());
        owed.clear();
        if (channels.length) ctx.checker.check(channels, "poll");
      },
    };
  }

  // ---- WebSocket transport ----

  // The socket's URL: a path is on the page's host, with ws: or wss: as the page.
  function socketUrl(url) {
    if (/^wss?:\/\//.test(url) || typeof location === "undefined") return url;
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + url;
  }

  // A WebSocket to `url`, or null (logged) when the browser will not make one.
  function newSocket(time, url) {
    try {
      const WebSocketImpl = time.WebSocket();
      return new WebSocketImpl(socketUrl(url));
    } catch (error) {
      console.error("PushGateway could not open a WebSocket", error);
      return null;
    }
  }

  // The subscribe frame for `channel`: since the position the page knows, with its token.
  function subscribeFrame(channel) {
    const frame = {type: "subscribe", channel: channel.name};
    if (channel.position) frame.since = channel.position;
    if (channel.token) frame.token = channel.token;
    return frame;
  }

  // What a close asks of the client: "policy" (misbehaviour: reconnecting at once would only
  // be refused again), "restart" (the server drains for a restart: come back soon, with
  // jitter, not up the backoff) or "drop" (anything else).
  function closeKind(event) {
    if (event && RESTART_CLOSES.includes(event.code)) return "restart";
    if (!event || !POLICY_CLOSES.includes(event.code)) return "drop";
    console.warn("PushGateway: the server closed the connection", event.code, event.reason);
    return "policy";
  }

  // A server frame from its text, or null (with a warning) when the text is not a JSON object.
  function parseFrame(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch (error) {
      console.warn("PushGateway: ignored a frame that is not JSON", text);
      return null;
    }
    return frame !== null && typeof frame === "object" ? frame : null;
  }

  // Keeps an open socket alive and checked: `send({type: "ping"})` every pingInterval ms
  // (proxies close idle sockets), and `dead()` when no pong came pongTimeout ms after a ping.
  function createHeartbeat(time, config, send, dead) {
    let pingTimer = null;
    let pingAt = Infinity;
    let pongTimer = null;
    function schedule(delay) {
      if (pingTimer !== null) time.clearTimeout(pingTimer);
      pingAt = time.now() + delay;
      pingTimer = time.setTimeout(() => {
        pingTimer = null;
        pingAt = Infinity;
        send({type: "ping"});
        if (pongTimer === null) {
          pongTimer = time.setTimeout(() => {
            pongTimer = null;
            dead();
          }, config.pongTimeout);
        }
      }, delay);
    }
    return {
      start: () => schedule(config.pingInterval),
      // A ping within `delay` ms, unless one is due sooner.
      soon(delay) {
        if (pingAt - time.now() > delay) schedule(delay);
      },
      pong() {
        if (pongTimer !== null) time.clearTimeout(pongTimer);
        pongTimer = null;
        if (pingTimer === null) schedule(config.pingInterval);
      },
      stop() {
        if (pingTimer !== null) time.clearTimeout(pingTimer);
        if (pongTimer !== null) time.clearTimeout(pongTimer);
        pingTimer = pongTimer = null;
        pingAt = Infinity;
      },
    };
  }

  // One socket at a time. Tells ctx.connection when it is open (opened()) and when it is gone
  // (failed(kind), see closeKind), and hands every frame but pong to ctx.frame.
  function createWebSocketTransport(ctx) {
    let socket = null; // the current socket: events of an earlier one are ignored
    let isOpen = false;
    const send = (frame) => isOpen && socket.send(JSON.stringify(frame));
    const dead = () => socket && socket.close(FACTS.noPongClose, "no pong");
    const heartbeat = createHeartbeat(ctx.time, ctx.config, send, dead);
    function connect() {
      const ws = newSocket(ctx.time, ctx.config.url);
      if (ws === null) return ctx.connection.failed("drop");
      socket = ws;
      ws.onopen = () => {
        if (ws !== socket) return;
        isOpen = true;
        ctx.connection.opened();
        heartbeat.start();
      };
      ws.onmessage = (event) => {
        if (ws === socket) receive(parseFrame(event.data));
      };
      ws.onclose = (event) => {
        if (ws !== socket) return;
        forget();
        ctx.connection.failed(closeKind(event));
      };
      ws.onerror = () => {}; // onclose follows and does the work
    }
    // Drops the current socket (closed, or being closed) and its heartbeat.
    function forget() {
      const ws = socket;
      socket = null;
      isOpen = false;
      heartbeat.stop();
      return ws;
    }
    function receive(frame) {
      if (frame === null) return;
      if (frame.type === "pong") return heartbeat.pong();
      const confirmed = frame.type === "subscribed" && ctx.channels.has(frame.channel);
      ctx.frame(frame);
      // Behind a proxy, a hint published while it set up the subscription can be lost; the
      // server checks positions on the connection's next frame: send one soon.
      if (confirmed) heartbeat.soon(ctx.config.checkAfterSubscribe);
    }
    return {
      open: connect,
      close() {
        const ws = forget();
        if (ws) ws.close(1000);
      },
      subscribe(channel) {
        channel.requested = isOpen;
        send(subscribeFrame(channel));
      },
      unsubscribe(channel) {
        if (channel.requested) send({type: "unsubscribe", channel: channel.name});
      },
    };
  }

  // ---- Stream transport: Server-Sent Events over a POSTed fetch() (transport "stream") ----

  // Server-Sent Events from text chunks: each complete event as onEvent(name, data). Comment
  // lines (the server's keep-alives) carry nothing but the fact that the stream is alive.
  function createEventParser(onEvent) {
    let buffer = "";
    return function feed(text) {
      buffer += text;
      let end;
      while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + buffer.slice(end).match(/^\r?\n\r?\n/)[0].length);
        let name = "message";
        const data = [];
        for (const line of block.split(/\r?\n/)) {
          if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          else if (line.startsWith("event:")) name = line.slice(6).trim();
        }
        if (data.length) onEvent(name, data.join("\n"));
      }
    };
  }

  // Reads a fetch() response's body as text: onText(chunk) for each chunk; resolves at its end.
  function readText(response, onText) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    function next() {
      return reader.read().then((chunk) => {
        if (chunk.done) return;
        onText(decoder.decode(chunk.value, {stream: true}));
        return next();
      });
    }
    return next();
  }

  // fetch()'s init for a stream that opens with `frames` (tokens in the body, never in a URL).
  function streamInit(frames, controller) {
    const headers = {Accept: "text/event-stream", "Content-Type": "application/json"};
    const init = {method: "POST", headers: headers, body: JSON.stringify({frames: frames})};
    init.cache = "no-store";
    init.credentials = "same-origin";
    if (controller) init.signal = controller.signal;
    return init;
  }

  // One stream at a time, opened with a subscribe frame per channel (since its position, with
  // its token). A channel subscribed later opens a new stream with every channel's position
  // (nothing is lost between two streams: the server says which moved); unsubscribing only
  // stops reading a channel until the next stream. No byte for streamIdle ms (the server sends
  // keep-alive comments) is a dead stream. Tells ctx.connection opened() and failed(kind).
  function createStreamTransport(ctx) {
    let current = null; // {names, tokens, controller, open, parse}: the stream open or opening
    let idle = null; // timer: nothing heard for streamIdle ms
    let reopening = null; // timer: a new stream for channels subscribed since
    const later = (fn, ms) => ctx.time.setTimeout(fn, ms);
    const on = {
      extra: new Map(), // name -> channel the transport was given that is not the page's
      current: () => current,
      started(stream, response) {
        watch();
        streamStarted(ctx, stream, response, () => stream === current);
      },
      heard: watch,
      ended: ended,
    };
    // A stream for every channel; `again` when it replaces an open one (the connection stays
    // up: a re-open is not a new connection, and the tabs that share it keep their places).
    function open(again) {
      forget();
      const stream = {names: new Set(), tokens: new Map(), open: false, again: again === true};
      current = stream;
      later(() => stream === current && sendStream(ctx, stream, on), 0); // with this task's channels
    }
    function watch() {
      if (idle !== null) ctx.time.clearTimeout(idle);
      const stream = current;
      idle = later(() => ended(stream, "drop"), ctx.config.streamIdle);
    }
    function ended(stream, kind) {
      if (stream !== current) return;
      forget();
      ctx.connection.failed(kind);
    }
    function forget() {
      const stream = current;
      current = null;
      for (const timer of [idle, reopening]) if (timer !== null) ctx.time.clearTimeout(timer);
      idle = reopening = null;
      if (stream && stream.controller) stream.controller.abort();
    }
    return createStreamHandle(ctx, {
      open: open,
      close() {
        on.extra.clear(); // a new connection is given its channels again
        forget();
      },
      current: on.current,
      extra: on.extra,
      reopen() {
        if (reopening !== null || !current || !current.open) return;
        reopening = later(() => {
          reopening = null;
          if (current && current.open) open(true);
        }, 0);
      },
    });
  }

  // POSTs `stream`'s request (a subscribe frame per channel of the page now) and reads the
  // answer: on.started(stream, response), on.heard() for every chunk, each frame to ctx.frame,
  // on.ended(stream, kind) when it ends (a `close` event gives the server's close code).
  function sendStream(ctx, stream, on) {
    stream.controller = typeof AbortController === "function" ? new AbortController() : null;
    stream.sent = true;
    // The page's channels, and those the transport was given besides (a leader tab's
    // followers'): by name, the page's own with the position it knows now.
    const wanted = new Map(on.extra);
    pageChannels(ctx).forEach((channel) => wanted.set(channel.name, channel));
    for (const channel of wanted.values()) {
      stream.names.add(channel.name);
      stream.tokens.set(channel.name, channel.token);
    }
    const frames = Array.from(wanted.values(), subscribeFrame);
    stream.parse = createEventParser((name, data) => {
      if (stream !== on.current()) return;
      const frame = parseFrame(data);
      if (name === "close") return on.ended(stream, closeKind(frame || {}));
      if (frame !== null) ctx.frame(frame);
    });
    Promise.resolve()
      .then(() => ctx.time.fetch(ctx.config.streamUrl, streamInit(frames, stream.controller)))
      .then((response) => {
        if (stream !== on.current()) return;
        if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
        stream.open = true;
        on.started(stream, response);
        return readText(response, (text) => {
          if (stream !== on.current()) return;
          on.heard();
          stream.parse(text);
        });
      })
      .then(() => on.ended(stream, "drop"), () => on.ended(stream, "drop"));
  }

  // A stream's answer began: its channels were asked for, and the connection is open (unless
  // the stream replaces an open one). `isCurrent()`: the stream is still the transport's.
  function streamStarted(ctx, stream, response, isCurrent) {
    pageChannels(ctx).forEach((c) => (c.requested = stream.names.has(c.name)));
    if (!stream.again) ctx.connection.opened();
    const check = () => isCurrent() && checkLive(ctx, stream.names);
    if (response.headers && response.headers.get(FACTS.streamRecheckHeader)) {
      ctx.time.setTimeout(check, ctx.config.checkAfterSubscribe);
    }
  }

  // Behind a GRIP proxy a hint published while the proxy took a stream's channels over can be
  // lost, and nothing on a held stream checks later: ask the positions view once.
  function checkLive(ctx, names) {
    const live = Array.from(pageChannels(ctx).values()).filter((c) => c.live && names.has(c.name));
    if (live.length) ctx.checker.check(live, "resync");
  }

  // The page's own channels (name -> channel). A leader tab's transport is made on a ctx whose
  // `channels` answers only has() (createSharedTransport's sharedInnerCtx, made with
  // Object.create(ctx)): its page's channels are the ctx it was made from.
  function pageChannels(ctx) {
    const channels = ctx.channels;
    if (channels && typeof channels.values === "function") return channels;
    const page = Object.getPrototypeOf(ctx).channels;
    return page && typeof page.values === "function" ? page : new Map();
  }

  // What the connection calls on a stream transport (see createStreamTransport).
  function createStreamHandle(ctx, stream) {
    return {
      open: stream.open,
      close: stream.close,
      subscribe(channel) {
        const own = pageChannels(ctx).get(channel.name) === channel;
        if (!own) stream.extra.set(channel.name, channel); // e.g. a follower tab's, by name
        const now = stream.current();
        if (!now || !now.sent) return; // not sent yet: it goes with the others
        const same = now.names.has(channel.name) && now.tokens.get(channel.name) === channel.token;
        // A channel of the page refused on this stream (requested false) is asked again.
        if (same && (channel.requested || !own)) return; // the open stream carries it
        stream.reopen();
      },
      unsubscribe(channel) {
        stream.extra.delete(channel.name);
        const now = stream.current();
        if (now) now.names.delete(channel.name);
      },
    };
  }

  // ---- Faye transport: legacy Fanout.io realm mode (transport "faye") ----

  // Fanout's Faye client script, added to the page with Subresource Integrity (a tampered
  // script is not run); resolves to the Faye global.
  function loadFaye(config) {
    if (globalThis.Faye) return Promise.resolve(globalThis.Faye);
    return new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = config.fayeScript;
      script.integrity = config.fayeIntegrity;
      script.crossOrigin = "anonymous";
      script.onload = () => resolve(globalThis.Faye);
      script.onerror = () => {
        script.remove();
        reject(new Error("could not load " + config.fayeScript));
      };
      document.head.appendChild(script);
    });
  }

  // A Faye client whose transport going down and up moves the connection's state. Faye renews
  // its subscriptions itself: once up again, the channels it had confirmed (the set
  // `confirmed`) are live, and checked for what moved meanwhile.
  function newFayeClient(Faye, ctx, confirmed) {
    const client = new Faye.Client(ctx.config.fayeUrl, {transportMode: "fallback"});
    client.on("transport:down", () => ctx.connection.setState("waiting"));
    client.on("transport:up", () => {
      ctx.connection.setState("connected");
      const channels = Array.from(ctx.channels.values()).filter((c) => confirmed.has(c));
      channels.forEach((channel) => channel.setLive(true));
      if (channels.length) ctx.checker.check(channels, "resync");
    });
    return client;
  }

  // Loads Faye on open() and subscribes each channel to "/" + its Bayeux name; messages are
  // our `message` frames. Faye confirms no positions, so each confirmed subscription asks the
  // positions view what moved (with the others confirmed at the same time).
  function createFayeTransport(ctx) {
    let faye = null; // the Faye.Client
    let loading = null; // the script, loaded once
    const subscriptions = new Map(); // channel -> Faye subscription
    const confirmed = new Set(); // channels Faye confirmed
    function open() {
      if (loading === null) loading = loadFaye(ctx.config);
      loading.then(
        (Faye) => {
          if (ctx.channels.size === 0) return ctx.connection.setState("idle");
          faye = faye || newFayeClient(Faye, ctx, confirmed);
          ctx.channels.forEach((channel) => subscribe(channel));
        },
        (error) => {
          loading = null; // try again on the next attempt
          console.error("PushGateway:", error.message);
          ctx.connection.failed("drop");
        }
      );
    }
    function subscribe(channel) {
      if (faye === null || subscriptions.has(channel)) return;
      const path = "/" + channel.name.replaceAll(".", FACTS.bayeuxDot);
      const subscription = faye.subscribe(path, ctx.frame);
      subscriptions.set(channel, subscription);
      subscription.then(
        () => {
          confirmed.add(channel);
          ctx.connection.setState("connected");
          channel.setLive(true);
          ctx.checker.soon(channel);
        },
        (error) => {
          subscriptions.delete(channel);
          ctx.frame({
            type: "error",
            code: ERRORS.UNAVAILABLE,
            message: String(error),
            channel: channel.name,
          });
        }
      );
    }
    return {
      open: open,
      subscribe: subscribe,
      unsubscribe(channel) {
        if (subscriptions.has(channel)) subscriptions.get(channel).cancel();
        subscriptions.delete(channel);
        confirmed.delete(channel);
      },
      close() {
        if (faye) faye.disconnect();
        faye = null;
      },
    };
  }

  // ---- Transports: which one the connection uses ----

  // The session's memory of a move to the stream (sessionStorage, where the page has one):
  // {retryAt, retryAfter}, when to try WebSockets again and how long the last wait was.
  function createTransportMemory(ctx) {
    const KEY = "pushgateway:transport";
    function storage() {
      try {
        return ctx.config.sessionStorage || (ctx.window && ctx.window.sessionStorage) || null;
      } catch (error) {
        return null; // a sandboxed frame may refuse even to hand it over
      }
    }
    return {
      load() {
        try {
          const saved = JSON.parse(storage().getItem(KEY));
          return saved && Number.isFinite(saved.retryAt) ? saved : null;
        } catch (error) {
          return null;
        }
      },
      save(value) {
        try {
          storage().setItem(KEY, JSON.stringify(value));
        } catch (error) {
          // no memory: the next page starts on WebSockets again
        }
      },
      clear() {
        try {
          storage().removeItem(KEY);
        } catch (error) {
          // nothing to forget
        }
      },
    };
  }

  // config.transport "websocket", "stream" or "faye" fixes the transport. "auto" starts on
  // the WebSocket and moves to the stream when the upgrade fails (a socket that never opens,
  // while a stream then does) or when sockets die before stableAfter twice in a row (a proxy
  // that lets them open and then cuts them). The move is remembered for the session; after
  // websocketRetry ms on the stream the WebSocket is tried again, and each retry that fails
  // doubles the wait (up to 8 times), so a socket that opens and dies is not retried forever.
  function createTransports(ctx, parts) {
    const memory = createTransportMemory(ctx);
    const t = transportState(ctx, memory.load());
    const auto = () => !["websocket", "stream", "faye"].includes(ctx.config.transport);
    function clearTimer() {
      if (t.timer !== null) ctx.time.clearTimeout(t.timer);
      t.timer = null;
    }
    // Back to WebSockets: the stream closes as for a restart (tabs that share it wait for
    // the leader's new connection), and the next attempt is a socket.
    function retry() {
      t.timer = null;
      if (t.mode !== "stream" || ctx.connection.state !== "connected") return;
      clearTimer();
      t.mode = "websocket";
      t.switching = true;
      parts.stream.close();
      ctx.connection.failed("restart");
    }
    const current = () => parts[auto() ? t.mode : ctx.config.transport] || parts.websocket;
    return {
      current: current,
      name: () => (auto() ? t.mode : ctx.config.transport),
      transport: chosenTransport(parts, current),
      opened() {
        clearTimer();
        if (!auto()) return;
        if (t.mode === "websocket") {
          t.openedAt = ctx.time.now();
          t.timer = ctx.time.setTimeout(() => stayedUp(ctx, t, memory), ctx.config.stableAfter);
          return;
        }
        t.proven = true;
        memory.save({retryAt: t.retryAt, retryAfter: t.retryAfter});
        t.timer = ctx.time.setTimeout(retry, Math.max(0, t.retryAt - ctx.time.now()));
        // After a socket that never opened: a server that was down (and is back) looks the
        // same as a proxy that refuses the upgrade. One socket beside the stream tells them
        // apart: if it opens, the page goes back to WebSockets at once.
        if (!t.probe) return;
        probeWebSocket(ctx, t, () => {
          clearTimer();
          stayedUp(ctx, t, memory); // WebSockets work: forget the move, and go back
          retry();
        });
      },
      // The current transport is gone (closeKind's `kind`): whether the next attempt uses
      // another transport.
      failed(kind) {
        clearTimer();
        if (t.switching) return (t.switching = false); // retry() chose already
        return auto() ? transportFailed(ctx, t, kind) : false;
      },
    };
  }

  // What createTransports remembers; `saved` is the session's memory of a move, if any.
  function transportState(ctx, saved) {
    const onStream = Boolean(saved) && saved.retryAt > ctx.time.now(); // else: time to retry
    return {
      mode: onStream ? "stream" : "websocket",
      proven: onStream, // a stream opened since the move: a proxy, not an outage
      retryAfter: saved ? saved.retryAfter : ctx.config.websocketRetry,
      retryAt: saved ? saved.retryAt : 0,
      openedAt: null, // when the current socket opened
      early: 0, // sockets in a row that died before stableAfter
      timer: null, // the socket has stayed up, or the retry of WebSockets
      probe: false, // the stream, once open, tries one socket beside it
      switching: false, // retry() closes the stream to go back to WebSockets
    };
  }

  // What the connection drives (through the tabs' sharing): whichever transport is chosen now.
  function chosenTransport(parts, current) {
    return {
      open: () => current().open(),
      close() {
        parts.websocket.close();
        parts.stream.close();
      },
      subscribe: (channel) => current().subscribe(channel),
      unsubscribe: (channel) => current().unsubscribe(channel),
    };
  }

  // A WebSocket opened beside the stream (createTransports): `opened()` if it opens (it is
  // closed at once), nothing if it fails.
  function probeWebSocket(ctx, t, opened) {
    t.probe = false;
    const ws = newSocket(ctx.time, ctx.config.url);
    if (ws === null) return;
    ws.onopen = () => {
      ws.close(1000);
      if (t.mode === "stream") opened();
    };
    ws.onclose = ws.onerror = () => {};
  }

  // A socket stayed up stableAfter ms: WebSockets work here (again); the session forgets the move.
  function stayedUp(ctx, t, memory) {
    t.timer = null;
    t.early = 0;
    t.retryAt = 0;
    t.retryAfter = ctx.config.websocketRetry;
    memory.clear();
  }

  // createTransports' choice after the current transport failed; whether it changed.
  function transportFailed(ctx, t, kind) {
    if (t.mode === "stream") {
      if (t.proven) return false;
      t.mode = "websocket"; // neither opens: the server is down, not a proxy in the way
      return true;
    }
    const lived = t.openedAt === null ? null : ctx.time.now() - t.openedAt;
    t.openedAt = null;
    if (lived !== null) {
      if (kind === "restart" || kind === "policy" || lived >= ctx.config.stableAfter) {
        t.early = 0;
        return false;
      }
      t.early += 1;
      if (t.early < 2) return false;
    }
    t.probe = lived === null; // a socket that never opened: a proxy, or a server down?
    // The upgrade failed, or sockets die young: to the stream, until t.retryAt.
    if (t.retryAt && ctx.time.now() >= t.retryAt) {
      t.retryAfter = Math.min(t.retryAfter * 2, ctx.config.websocketRetry * 8); // a retry failed
    }
    t.retryAt = ctx.time.now() + t.retryAfter;
    t.mode = "stream";
    t.proven = false;
    t.early = 0;
    return true;
  }

  // ---- Connection: the state machine the transports drive ----

  // Reconnection delays: capped exponential backoff with equal jitter (half the delay fixed,
  // half random), started over only once a connection has stayed up stableAfter ms, so a
  // server that accepts and then drops connections is not hammered. A server that closes for
  // a restart spreads its closes over its drain window: the client adds a random wait within
  // restartDelay and does not climb the ladder for it.
  function createBackoff(time, config) {
    let attempt = 0; // failed attempts since a connection last stayed up
    let stable = null; // timer: the connection has stayed up
    function cancelStable() {
      if (stable !== null) time.clearTimeout(stable);
      stable = null;
    }
    return {
      // The wait before the next attempt, after a close of `kind` (see closeKind).
      next(kind) {
        if (kind === "restart") return time.random() * config.restartDelay;
        const cap = Math.min(config.backoffMax, config.backoffInitial * 2 ** attempt);
        attempt += 1;
        return cap / 2 + time.random() * (cap / 2);
      },
      opened() {
        stable = time.setTimeout(() => {
          stable = null;
          attempt = 0;
        }, config.stableAfter);
      },
      // The connection is gone; after a close for misbehaviour ("policy") the next wait is the
      // longest.
      dropped(kind) {
        cancelStable();
        const longest = Math.ceil(Math.log2(config.backoffMax / config.backoffInitial));
        if (kind === "policy") attempt = Math.max(attempt, longest);
      },
      reset() {
        cancelStable();
        attempt = 0;
      },
    };
  }

  // A named state, and listeners told of each change as (state, previous): first `onChange`,
  // then those added with listen(), each on its own (one that throws does not stop the others).
  function createStates(initial, onChange) {
    let state = initial;
    const listeners = new Set();
    return {
      get: () => state,
      set(next) {
        if (next === state) return;
        const previous = state;
        state = next;
        onChange(next, previous);
        for (const listener of Array.from(listeners)) {
          try {
            listener(next, previous);
          } catch (error) {
            console.error("PushGateway state listener failed", error);
          }
        }
      },
      listen(listener) {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
    };
  }

  // States: "idle" (no subscriptions, no socket), "connecting", "connected", "waiting"
  // (backing off before the next attempt). connect() and disconnect() come from subscribe and
  // unsubscribe; opened() and failed(kind) from the transport; wake() from the page.
  function createConnection(ctx) {
    let timer = null; // the wait before the next attempt
    let contactLost = ctx.time.now(); // positions are known complete up to this moment
    const backoff = createBackoff(ctx.time, ctx.config);
    const states = createStates("idle", (next, previous) => {
      if (previous === "connected") contactLost = ctx.time.now();
      if (next !== "connected") ctx.channels.forEach((channel) => channel.setLive(false));
    });
    function connect() {
      timer = null;
      if (ctx.channels.size === 0) return states.set("idle");
      states.set("connecting");
      ctx.transport().open();
    }
    return {
      get state() {
        return states.get();
      },
      setState: states.set,
      onStateChange: states.listen,
      connect: connect,
      opened() {
        backoff.opened();
        ctx.transports.opened();
        // A channel idle for longer than the server remembers it reads as "nothing published"
        // again: after so long away, a page cannot tell that from what it saw, so it refetches.
        if (ctx.config.positionTtl && ctx.time.now() - contactLost > ctx.config.positionTtl) {
          ctx.channels.forEach((channel) => (channel.position = null));
        }
        states.set("connected");
        ctx.channels.forEach((channel) => ctx.transport().subscribe(channel));
      },
      // The transport is gone: "drop", "policy" or "restart" (see closeKind).
      failed(kind) {
        backoff.dropped(kind);
        if (ctx.transports.failed(kind)) backoff.reset(); // another transport: try it soon
        if (ctx.channels.size === 0) return states.set("idle");
        states.set("waiting");
        timer = ctx.time.setTimeout(connect, backoff.next(kind));
      },
      disconnect() {
        if (timer !== null) ctx.time.clearTimeout(timer);
        timer = null;
        backoff.reset();
        ctx.poller.stop();
        ctx.transport().close();
        states.set("idle");
      },
      // Back online, or the tab shown again: do not sit out the rest of a long backoff.
      wake() {
        if (states.get() !== "waiting") return;
        if (timer !== null) ctx.time.clearTimeout(timer);
        connect();
      },
      // A positions answer from `moment` covers the time without a connection until then.
      checkedAt(moment) {
        if (states.get() !== "connected") contactLost = moment;
      },
    };
  }

  // ---- Shared connection: one connection per browser, not per tab ----

  // Tabs of one origin share one connection. The tab that holds a Web Lock named for the
  // connection's URL is the leader: its transport (the WebSocket today) is the real one, and
  // it forwards each server frame over a BroadcastChannel of the same name to the tabs it
  // concerns. The other tabs follow: their subscribes (with their own positions and tokens)
  // and unsubscribes go to the leader, which sends them on. Every tab keeps its own channels,
  // positions, throttle, tokens and self-echo check: it dispatches a frame as if its own
  // socket had carried it. When the leader's tab closes (or it has no subscription left) the
  // lock goes to the next tab in line, which opens a connection; every tab subscribes again
  // with its positions, so only channels that moved meanwhile resync. Messages on the bus:
  // {kind, from, ...}: "hello" (a follower asks), "leader" (a new leader), "up" (its
  // connection is open; `to` a tab that said hello, or every tab), "down" (it is gone:
  // `close` as closeKind says), "subscribe" (`frame`), "unsubscribe" (`channel`), "bye" (a
  // follower leaves) and "frame" (a server frame, `to` the ids of the tabs it concerns).

  // What the leader knows of each channel of the shared connection: which tabs the server
  // confirmed it for (hints go to those), and whose subscribes it has yet to answer, in order
  // (the server answers a connection's frames in order). Reset with each new connection.
  function createShareTable() {
    const entries = new Map(); // name -> {confirmed: Set of tab ids, pending: [tab id or null]}
    function entry(name) {
      if (!entries.has(name)) entries.set(name, {confirmed: new Set(), pending: []});
      return entries.get(name);
    }
    const wanted = (e) => e.confirmed.size > 0 || e.pending.some((tab) => tab !== null);
    return {
      reset: () => entries.clear(),
      has: (name) => entries.has(name) && wanted(entries.get(name)),
      subscribe: (tab, name) => entry(name).pending.push(tab),
      // `tab` leaves `name`: true when no tab wants it any more (the server is told).
      unsubscribe(tab, name) {
        const e = entries.get(name);
        if (!e || !wanted(e)) return false;
        e.confirmed.delete(tab);
        e.pending = e.pending.map((waiting) => (waiting === tab ? null : waiting));
        return !wanted(e);
      },
      // Every tab the table holds a subscription or an answer for.
      tabs() {
        const tabs = new Set();
        for (const e of entries.values()) {
          for (const t of [...e.confirmed, ...e.pending]) tabs.add(t);
        }
        tabs.delete(null);
        return tabs;
      },
      // The channels `tab` had that no tab wants now.
      leave(tab) {
        return Array.from(entries.keys()).filter((name) => this.unsubscribe(tab, name));
      },
      // The ids of the tabs a server frame is for, or null for every tab.
      route(frame) {
        const e = entries.get(frame.channel);
        if (!e) return frame.type === "error" && !frame.channel ? null : [];
        const answer = frame.type === "subscribed" || frame.type === "error";
        if (answer && e.pending.length) {
          const tab = e.pending.shift();
          if (tab === null) return [];
          if (frame.type === "subscribed") e.confirmed.add(tab);
          else e.confirmed.delete(tab);
          return [tab];
        }
        const tabs = Array.from(e.confirmed);
        if (frame.type === "error") e.confirmed.clear(); // the server ended it (a token expired)
        return frame.type === "unsubscribed" ? [] : tabs;
      },
    };
  }

  // Whether this page can share: BroadcastChannel and Web Locks, and `share` not turned off.
  function canShare(ctx) {
    return ctx.config.share !== false && Boolean(ctx.time.BroadcastChannel() && ctx.time.locks());
  }

  // The transport `make(innerCtx)` makes, shared between the tabs of one origin when they can
  // (see above); otherwise, or once this tab has left sharing, it is this tab's own. `make`
  // returns a transport ({open, close, subscribe, unsubscribe}) that reports to innerCtx (its
  // connection's opened() and failed(kind), and frame()); where a client chooses between
  // transports, the chooser is what `make` returns, so the tabs share whichever is in use. A follower
  // whose subscribe the shared connection refuses as too_many_subscriptions (the tabs'
  // channels together are past the server's limit) leaves sharing and opens its own.
  function createSharedTransport(ctx, make) {
    const tab = newClientId(ctx.time.random);
    const table = createShareTable();
    const s = {tab: tab, table: table, role: null, solo: false, bus: null, lock: null};
    s.up = false; // the leader's connection is open
    s.attached = false; // a follower whose subscribes go to an open leader connection
    s.awaiting = false; // a follower that wants to attach once the leader's connection is up
    s.inner = make(sharedInnerCtx(ctx, s));
    s.post = (message) => s.bus && s.bus.postMessage(Object.assign({from: tab}, message));
    const shared = () => !s.solo && canShare(ctx);
    return {
      open() {
        if (!shared()) return s.inner.open();
        if (!s.bus) joinShare(ctx, s);
        if (s.role === "leader") return s.inner.open();
        s.awaiting = true;
        s.post({kind: "hello"});
      },
      close() {
        if (s.role === "leader") s.post({kind: "down", close: "restart"});
        else if (s.attached) s.post({kind: "bye"});
        leaveShare(s);
        s.inner.close();
      },
      subscribe(channel) {
        if (!s.bus) return s.inner.subscribe(channel); // this tab's own connection
        const frame = subscribeFrame(channel);
        const leading = s.role === "leader" && s.up;
        channel.requested = leading || s.attached; // otherwise sent once attached
        if (leading) {
          table.subscribe(tab, channel.name);
          s.inner.subscribe(innerChannel(frame));
        } else if (s.attached) {
          s.post({kind: "subscribe", frame: frame});
        }
      },
      unsubscribe(channel) {
        if (!s.bus) return s.inner.unsubscribe(channel);
        if (s.role === "leader") return leaderUnsubscribe(s, tab, channel.name);
        if (s.attached) s.post({kind: "unsubscribe", channel: channel.name});
      },
      get sharing() {
        return s.role;
      },
    };
  }

  // What the inner transport is given for a subscribe frame (subscribeFrame reads it back).
  function innerChannel(frame) {
    return {name: frame.channel, position: frame.since, token: frame.token, requested: false};
  }

  function leaderUnsubscribe(s, tab, name) {
    if (s.up && s.table.unsubscribe(tab, name)) s.inner.unsubscribe({name: name, requested: true});
  }

  // The ctx the inner transport is made on: as a leader's, its connection's news and frames
  // go to every tab; otherwise they are this tab's alone.
  function sharedInnerCtx(ctx, s) {
    const inner = Object.create(ctx);
    const leads = () => s.role === "leader";
    inner.connection = Object.assign(Object.create(ctx.connection), {
      opened() {
        if (!leads()) return ctx.connection.opened();
        s.up = true;
        s.table.reset();
        ctx.connection.opened(); // this tab's subscribes first
        s.post({kind: "up"});
        sweepTabs(ctx, s);
      },
      failed(kind) {
        if (leads()) {
          s.up = false;
          s.table.reset();
          s.post({kind: "down", close: kind});
        }
        ctx.connection.failed(kind);
      },
    });
    inner.frame = (frame) => {
      if (!leads()) return ctx.frame(frame);
      const to = s.table.route(frame);
      if (to === null || to.includes(s.tab)) ctx.frame(frame);
      const others = to === null ? null : to.filter((tab) => tab !== s.tab);
      if (others === null || others.length) s.post({kind: "frame", to: others, frame: frame});
    };
    // A subscribe confirmed on the connection, for any tab, asks for an early ping.
    const union = {has: (name) => s.table.has(name) || ctx.channels.has(name)};
    Object.defineProperty(inner, "channels", {get: () => (leads() ? union : ctx.channels)});
    return inner;
  }

  // Joins the bus and queues for the lock: granted, this tab leads until it leaves sharing or
  // closes (the browser releases a closed tab's locks).
  function joinShare(ctx, s) {
    // Versioned: tabs running another version of this module (a deploy while tabs stay
    // open) keep to their own leader rather than misread each other's messages.
    const name = "pushgateway:share1:" + socketUrl(ctx.config.url);
    const Channel = ctx.time.BroadcastChannel();
    s.bus = new Channel(name);
    s.bus.onmessage = (event) => onShareMessage(ctx, s, event.data || {});
    const abort = new AbortController();
    const lock = {abort: abort, release: null};
    const held = new Promise((resolve) => (lock.release = resolve));
    s.lock = lock;
    s.name = name;
    const locks = ctx.time.locks();
    Promise.resolve()
      .then(() => locks.request(name, {signal: abort.signal}, () => {
        if (s.lock !== lock) return null;
        becomeLeader(ctx, s);
        return held;
      }))
      .catch(() => {}); // aborted: this tab left sharing before its turn
    // This tab's presence, which the leader checks (sweepTabs): held until it leaves.
    Promise.resolve()
      .then(() => locks.request(presence(name, s.tab), {signal: abort.signal}, () => held))
      .catch(() => {});
    if (ctx.window && ctx.window.addEventListener && !s.hides) {
      s.hides = true;
      ctx.window.addEventListener("pagehide", () => followerHides(ctx, s));
    }
  }

  // A follower's page going away: the leader drops its subscriptions. Should the page come
  // back (the back-forward cache), it attaches again as after a drop.
  function followerHides(ctx, s) {
    if (!s.attached) return;
    s.post({kind: "bye"});
    s.attached = false;
    ctx.connection.failed("restart");
  }

  function leaveShare(s) {
    if (s.lock) {
      s.lock.abort.abort();
      s.lock.release();
    }
    if (s.bus) s.bus.close();
    s.bus = s.lock = s.role = null;
    s.up = s.attached = s.awaiting = false;
    s.table.reset();
  }

  // The lock is this tab's: it opens the connection every tab will share.
  function becomeLeader(ctx, s) {
    s.role = "leader";
    s.attached = s.awaiting = false;
    s.post({kind: "leader"});
    const state = ctx.connection.state;
    if (state === "waiting") return ctx.connection.wake();
    if (state === "idle") return;
    ctx.connection.setState("connecting");
    s.inner.open();
  }

  function onShareMessage(ctx, s, message) {
    if (s.role === "leader") return leaderHears(ctx, s, message);
    const forMe = (to) => to === null || to === undefined || to.includes(s.tab);
    if (message.kind === "up" && forMe(message.to && [message.to])) {
      if (s.awaiting) {
        s.awaiting = false;
        s.attached = true;
        s.role = "follower";
        ctx.connection.opened();
      } else if (ctx.connection.state === "waiting") {
        ctx.connection.wake();
      }
    } else if (message.kind === "down" || message.kind === "leader") {
      // The connection this tab followed is gone (a new leader opens another).
      const was = s.attached || s.awaiting;
      s.attached = s.awaiting = false;
      if (was) ctx.connection.failed(message.close || "restart");
    } else if (message.kind === "frame" && s.attached && forMe(message.to)) {
      followerFrame(ctx, s, message.frame);
    } else if (message.kind === "solo" && s.attached && forMe([message.to])) {
      goSolo(ctx, s);
    }
  }

  // A server frame for this follower. A subscribe refused for the shared connection's limit
  // makes this tab leave sharing for a connection of its own.
  function followerFrame(ctx, s, frame) {
    if (frame.type !== "error" || frame.code !== ERRORS.TOO_MANY_SUBSCRIPTIONS) {
      return ctx.frame(frame);
    }
    goSolo(ctx, s);
  }

  function goSolo(ctx, s) {
    s.post({kind: "bye"});
    leaveShare(s);
    s.solo = true;
    ctx.connection.setState("connecting");
    s.inner.open();
  }

  // A stream carries each channel once, with one token, and answers every channel again
  // when it re-opens: a follower's private channel cannot ride on it with a token of its
  // own (its answers could be another tab's), so that follower is told to go its own way.
  function leaderHears(ctx, s, message) {
    const from = message.from;
    if (message.kind === "hello" && s.up) s.post({kind: "up", to: from});
    if (!s.up) return;
    const privately = () => message.frame.channel.startsWith(FACTS.privatePrefix);
    const onStream = () => ctx.transports && ctx.transports.name() === "stream";
    if (message.kind === "subscribe" && privately() && onStream()) {
      s.post({kind: "solo", to: from});
    } else if (message.kind === "subscribe") {
      s.table.subscribe(from, message.frame.channel);
      s.inner.subscribe(innerChannel(message.frame));
    } else if (message.kind === "unsubscribe") {
      leaderUnsubscribe(s, from, message.channel);
    } else if (message.kind === "bye") {
      leaveTab(s, from);
    }
  }

  function leaveTab(s, tab) {
    for (const name of s.table.leave(tab)) s.inner.unsubscribe({name: name, requested: true});
  }

  const presence = (name, tab) => name + "#" + tab;

  // Every pingInterval while it leads: the tabs that closed without a word (a crash, a killed
  // process: no pagehide) no longer hold their presence lock; their channels are left.
  function sweepTabs(ctx, s) {
    ctx.time.clearTimeout(s.sweep);
    s.sweep = ctx.time.setTimeout(() => {
      if (s.role !== "leader" || !s.up) return;
      sweepTabs(ctx, s);
      Promise.resolve()
        .then(() => ctx.time.locks().query())
        .then((state) => {
          if (s.role !== "leader" || !s.up) return;
          const present = new Set((state.held || []).map((lock) => lock.name));
          for (const tab of s.table.tabs()) {
            if (tab !== s.tab && !present.has(presence(s.name, tab))) leaveTab(s, tab);
          }
        })
        .catch(() => {}); // a browser without query(): tabs leave by pagehide only
    }, ctx.config.pingInterval);
  }

  // ---- Client: the parts wired, and what a page calls ----

  // A server frame, to the channel it is about.
  function dispatch(ctx, frame) {
    const channel = ctx.channels.get(frame.channel);
    if (frame.type === "error") return ctx.refusals.refused(channel, frame);
    if (!channel) return;
    if (frame.type === "subscribed") {
      channel.confirmed(frame.position);
    } else if (frame.type === "message") {
      const own = ctx.clientTag !== null && frame.client === ctx.clientTag;
      channel.message(frame.position, frame.data, ctx.config.ignoreOwn && own, frame.id);
    } else if (frame.type === "resync") {
      channel.resync(frame.position);
    }
  }

  // The channel `name`, made and subscribed on first use (from the subscribe's `since`, else
  // the rendered position); a subscribe's token and getToken, when given, replace the
  // channel's.
  function joinChannel(ctx, name, options) {
    let channel = ctx.channels.get(name);
    if (channel) {
      if (options.token) channel.token = options.token;
      if (options.getToken) channel.getToken = options.getToken;
      return channel;
    }
    const since = isPosition(options.since) ? options.since : undefined;
    channel = createChannel(name, {
      position: since || (ctx.config.positions || {})[name],
      token: options.token || (ctx.config.tokens || {})[name],
      getToken: options.getToken,
    }, ctx);
    ctx.channels.set(name, channel);
    ctx.poller.reset(channel);
    ctx.transport().subscribe(channel);
    return channel;
  }

  // subscribe(): a throttle for `callback` on the channel, a connection if there was none;
  // returns unsubscribe(), which closes the connection after the page's last subscription.
  function subscribe(ctx, name, callback, options) {
    if (typeof name !== "string" || !CHANNEL_RE.test(name)) {
      throw new TypeError("PushGateway: invalid channel name " + JSON.stringify(name));
    }
    if (typeof callback !== "function") {
      throw new TypeError("PushGateway: subscribe needs a callback function");
    }
    options = options || {};
    const ms = options.throttle !== undefined ? options.throttle : ctx.config.throttle;
    const throttle = createThrottle(ctx.time, ms, (event) => {
      try {
        callback({channel: name, reason: event.reason, data: event.data, count: event.count});
      } catch (error) {
        console.error("PushGateway callback for " + name + " failed", error);
      }
    });
    const joined = ctx.channels.get(name);
    const channel = joinChannel(ctx, name, options);
    channel.subscriptions.add(throttle);
    if (ctx.connection.state === "idle") ctx.connection.connect();
    // Content rendered at `since` joins a channel the page knows to be further on (a fragment
    // swapped in after a hint it does not show): it missed that hint.
    const known = joined && channel.position;
    if (known && isPosition(options.since) && behind(options.since, known)) {
      Promise.resolve().then(() => throttle.push("resync", null));
    }
    let subscribed = true;
    return function unsubscribe() {
      if (!subscribed) return;
      subscribed = false;
      throttle.stop();
      channel.subscriptions.delete(throttle);
      if (channel.subscriptions.size > 0 || !channel.current()) return;
      ctx.channels.delete(name);
      ctx.transport().unsubscribe(channel);
      if (ctx.channels.size === 0) ctx.connection.disconnect();
      else ctx.poller.schedule();
    };
  }

  // The page's signals: the browser back online, the tab shown again.
  function watchPage(ctx) {
    const win = ctx.window;
    if (!win || !win.addEventListener) return;
    win.addEventListener("online", () => ctx.connection.wake());
    const doc = win.document;
    if (!doc || !doc.addEventListener) return;
    doc.addEventListener("visibilitychange", () => {
      if (doc.visibilityState !== "visible") return;
      ctx.connection.wake();
      ctx.poller.shown();
    });
  }

  // A client on `config` (complete: DEFAULTS and all).
  function newClient(config) {
    const time = createEnv(config);
    const ctx = {
      config: config,
      time: time,
      channels: new Map(),
      window: config.window || (typeof window !== "undefined" ? window : null),
      clientId: config.clientId || newClientId(time.random),
      clientTag: null, // the tag of the hints this client caused, once computed
      frame: (frame) => dispatch(ctx, frame),
    };
    clientTag(time, ctx.clientId).then((tag) => (ctx.clientTag = tag));
    ctx.pageTokens = createPageTokens(ctx);
    ctx.connection = createConnection(ctx);
    ctx.poller = createPoller(ctx);
    ctx.checker = createChecker(ctx);
    ctx.refusals = createRefusals(ctx);
    // The tabs share whichever transport the chooser uses (the leader's choice).
    const chosen = createSharedTransport(ctx, (inner) => {
      ctx.transports = createTransports(inner, {
        websocket: createWebSocketTransport(inner),
        stream: createStreamTransport(inner),
      });
      return ctx.transports.transport;
    });
    const faye = createFayeTransport(ctx);
    ctx.transport = () => (config.transport === "faye" ? faye : chosen);
    watchPage(ctx);
    const client = {
      subscribe: (channel, callback, options) => subscribe(ctx, channel, callback, options),
      onStateChange: ctx.connection.onStateChange,
      configure(overrides) {
        Object.assign(config, overrides || {});
        return client;
      },
      // fetch() that says which page made the request, so the hints it causes skip this page.
      fetch(input, init) {
        const headers = new Headers((init && init.headers) || {});
        headers.set(CLIENT_HEADER, ctx.clientId);
        return time.fetch(input, Object.assign({}, init, {headers: headers}));
      },
      clientId: ctx.clientId,
      // The transport in use: "websocket", "stream" or "faye".
      get transport() {
        return ctx.transports.name();
      },
      get state() {
        return ctx.connection.state;
      },
      // "leader", "follower", or null: this tab's connection is its own (or it has none).
      get sharing() {
        return config.transport === "faye" ? null : chosen.sharing;
      },
    };
    return client;
  }

  // ---- Fragments: elements that follow a channel ----

  // An element with FACTS.fragmentAttributes.channel (rendered by {% pushgateway_fragment %})
  // is subscribed to that channel while it is in the document, and told of each callback by
  // a FACTS.fragmentEvent event on itself (bubbling; `detail` is the callback's argument), so
  // htmx (hx-trigger), Turbo or a plain listener can refetch it without a script of the page.
  const FRAGMENT = FACTS.fragmentAttributes;
  const FRAGMENT_SELECTOR = "[" + FRAGMENT.channel + "]";

  // The subscribe options a fragment's attributes give: `since` (the position its view
  // rendered), `token` and `throttle`. An attribute that does not parse is left out.
  function fragmentOptions(element) {
    const options = {};
    const since = element.getAttribute(FRAGMENT.since);
    if (since) {
      try {
        options.since = JSON.parse(since);
      } catch (error) {
        console.warn("PushGateway: " + FRAGMENT.since + " is not JSON", element);
      }
    }
    const token = element.getAttribute(FRAGMENT.token);
    if (token) options.token = token;
    const throttle = Number(element.getAttribute(FRAGMENT.throttle) || NaN);
    if (throttle >= 0) options.throttle = throttle;
    return options;
  }

  // Subscribes `element` to `channel` on `client`: {channel, unsubscribe}. A name the client
  // refuses is logged, and followed by nothing.
  function followFragment(client, element, channel) {
    const changed = (event) => {
      const init = {bubbles: true, detail: event};
      element.dispatchEvent(new CustomEvent(FACTS.fragmentEvent, init));
    };
    let unsubscribe = () => {};
    try {
      unsubscribe = client.subscribe(channel, changed, fragmentOptions(element));
    } catch (error) {
      console.error(error.message, element);
    }
    return {channel: channel, unsubscribe: unsubscribe};
  }

  // The fragments among `nodes` and under them (nodes of any kind: text, comments too).
  function fragmentsIn(nodes) {
    const found = [];
    for (const node of nodes) {
      if (node.nodeType !== 1) continue;
      if (node.matches(FRAGMENT_SELECTOR)) found.push(node);
      found.push(...node.querySelectorAll(FRAGMENT_SELECTOR));
    }
    return found;
  }

  // Follows the fragments under `root` (a document or an element) on `client`: those there
  // now, those added later (a MutationObserver: options.MutationObserver, else the global
  // one), until they leave the document or change channel; returns stop(). New fragments
  // subscribe before those gone unsubscribe, so a fragment replaced by its refetched self
  // (an htmx outerHTML swap) keeps its channel's subscription and position; the new one is
  // called back ("resync") when its `since` is behind a hint the page already had.
  function watchFragments(client, root, options) {
    const followed = new Map(); // element -> {channel, unsubscribe}
    function reconcile(candidates) {
      const gone = [];
      for (const element of new Set([...candidates, ...followed.keys()])) {
        const entry = followed.get(element);
        const channel = element.isConnected ? element.getAttribute(FRAGMENT.channel) : null;
        if (entry && entry.channel === channel) continue;
        if (entry) gone.push(entry);
        if (channel === null) followed.delete(element);
        else followed.set(element, followFragment(client, element, channel));
      }
      gone.forEach((entry) => entry.unsubscribe());
    }
    function changed(records) {
      const candidates = [];
      for (const record of records) {
        if (record.type === "attributes") candidates.push(record.target);
        else candidates.push(...fragmentsIn(record.addedNodes));
      }
      reconcile(candidates);
    }
    const Observer = (options && options.MutationObserver) || globalThis.MutationObserver;
    const observer = Observer ? new Observer(changed) : null;
    if (observer) {
      const filter = [FRAGMENT.channel];
      observer.observe(root, {childList: true, subtree: true, attributeFilter: filter});
    }
    reconcile(fragmentsIn([root]).concat(root.nodeType === 1 ? [] : fragmentsIn(root.children)));
    return function stop() {
      if (observer) observer.disconnect();
      followed.forEach((entry) => entry.unsubscribe());
      followed.clear();
    };
  }

  // The configuration {% pushgateway_script %} rendered into `doc`, or {} where there is none.
  function renderedConfig(doc) {
    const node = doc && doc.getElementById ? doc.getElementById(FACTS.configElement) : null;
    if (!node) return {};
    try {
      const config = JSON.parse(node.textContent);
      return config !== null && typeof config === "object" ? config : {};
    } catch (error) {
      console.error("PushGateway: #" + FACTS.configElement + " is not valid JSON", error);
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

  // The page's client: the configuration rendered into `doc`, its forms' client fields, and
  // its fragments.
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
    // Its fragments: elements that follow a channel (watchFragments).
    if (doc && doc.querySelectorAll) watchFragments(client, doc);
    return client;
  }

  return {
    createClient: createClient,
    fromDocument: fromDocument,
    watchFragments: watchFragments,
    DEFAULTS: DEFAULTS,
    FACTS: FACTS,
    CLIENT_HEADER: CLIENT_HEADER,
    CLIENT_FIELD: CLIENT_FIELD,
    // The parts a client is made of, for this module's tests: not API, they may change.
    _internals: {
      createEnv: createEnv,
      createThrottle: createThrottle,
      createChannel: createChannel,
      createRefusals: createRefusals,
      createPageTokens: createPageTokens,
      clientTag: clientTag,
      positionsRequests: positionsRequests,
      createChecker: createChecker,
      createPoller: createPoller,
      createHeartbeat: createHeartbeat,
      createWebSocketTransport: createWebSocketTransport,
      createEventParser: createEventParser,
      createStreamTransport: createStreamTransport,
      createTransports: createTransports,
      createFayeTransport: createFayeTransport,
      createBackoff: createBackoff,
      createStates: createStates,
      createConnection: createConnection,
      createShareTable: createShareTable,
      createSharedTransport: createSharedTransport,
    },
  };
});
