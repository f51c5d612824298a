// TypeScript declarations for the django-pushgateway browser module (pushgateway.js, and
// pushgateway.mjs through pushgateway.d.mts). See docs/javascript.md.

/** A channel's stream position: `seq` counts publishes within one `epoch`. */
export interface Position {
  epoch: string;
  seq: number;
}

/** Why a subscription calls back: a hint, hints possibly missed, or a poll that saw a move. */
export type Reason = "message" | "resync" | "poll";

export type State = "idle" | "connecting" | "connected" | "waiting";

export interface PushEvent<Data = unknown> {
  channel: string;
  reason: Reason;
  /** The latest hint of the throttle window, or null when there was none. */
  data: Data | null;
  /** How many events the throttle folded into this call. */
  count: number;
}

/** Gets a fresh token for a private channel whose token was refused (expired, rotated). */
export type TokenSource = (channel: string) => string | null | undefined | Promise<string | null | undefined>;

export interface SubscribeOptions {
  /** ms between callbacks of this subscription (leading and trailing edge). */
  throttle?: number;
  /** For `private-` channels; rendered for you by pushgateway.watch(). */
  token?: string;
  getToken?: TokenSource;
  /** The position what this subscription shows was rendered at: a new channel starts from it,
   * and a channel the page knows to be further on calls back "resync" at once. */
  since?: Position;
}

export interface Config {
  url?: string;
  throttle?: number;
  pollDown?: number;
  pollUp?: number;
  backoffInitial?: number;
  backoffMax?: number;
  stableAfter?: number;
  /** ms: after a service-restart close (FACTS.restartCloses) the client reconnects at a
   * random moment within this, without climbing its backoff. */
  restartDelay?: number;
  pingInterval?: number;
  pongTimeout?: number;
  checkAfterSubscribe?: number;
  resyncGrace?: number;
  ignoreOwn?: boolean;
  positionsUrl?: string | null;
  positionTtl?: number | null;
  positions?: Record<string, Position | null>;
  tokens?: Record<string, string>;
  /** Every channel's token hook, where a subscription gives none. Without one, a refused
   * token is renewed by fetching the page (window.location.href) again and reading its
   * rendered configuration. */
  getToken?: TokenSource;
  /** "auto" (the default): the WebSocket, moving to the stream (Server-Sent Events over a
   * POSTed fetch) when the upgrade fails or sockets die before stableAfter twice in a row;
   * remembered for the session (sessionStorage), WebSockets tried again after websocketRetry
   * ms. "websocket" or "stream" alone; "faye" for the legacy Fanout.io realm mode. */
  transport?: "auto" | "websocket" | "stream" | "faye";
  streamUrl?: string;
  /** ms on the stream before WebSockets are tried again (doubled after each failed retry). */
  websocketRetry?: number;
  /** ms without a byte on a stream (keep-alives included) after which it is dead. */
  streamIdle?: number;
  /** Where the move to the stream is remembered; default: window.sessionStorage. */
  sessionStorage?: Pick<Storage, "getItem" | "setItem" | "removeItem">;
  /** Tabs of one origin (and clients of one page) share one connection, a leader tab's, when
   * the browser has BroadcastChannel and Web Locks; false: a connection of this client's own. */
  share?: boolean;
  fayeUrl?: string;
  fayeScript?: string;
  fayeIntegrity?: string;
  /** Unguessable: hints carry its SHA-256 (FACTS.clientTagLength hex characters). */
  clientId?: string;
  // For tests: time, randomness and transport can be injected.
  setTimeout?: (callback: () => void, ms: number) => unknown;
  clearTimeout?: (id: unknown) => void;
  now?: () => number;
  random?: () => number;
  WebSocket?: typeof WebSocket;
  /** What tabs share a connection with (the global BroadcastChannel and navigator.locks). */
  BroadcastChannel?: typeof BroadcastChannel;
  locks?: Pick<LockManager, "request">;
  fetch?: typeof fetch;
  /** Web Crypto, whose SHA-256 computes the tag of this client's hints. */
  crypto?: { subtle?: Pick<SubtleCrypto, "digest"> };
  /** Its `online` and `visibilitychange` events wake the client; createClient reads the
   * rendered configuration from its document; the default getToken fetches its location. */
  window?: EventTarget & { document?: Document; location?: { href: string } };
}

export interface Client {
  /** Calls `callback` whenever the page should refetch what it shows of `channel`. */
  subscribe<Data = unknown>(
    channel: string,
    callback: (event: PushEvent<Data>) => void,
    options?: SubscribeOptions,
  ): () => void;
  onStateChange(listener: (state: State, previous: State) => void): () => void;
  configure(config: Config): Client;
  /** fetch() that says this page made the request, so hints it causes skip this page. */
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
  /** Sent with the page's own requests (header X-PushGateway-Client or form field). */
  readonly clientId: string;
  readonly state: State;
  /** The transport the connection uses now. */
  readonly transport: "websocket" | "stream" | "faye";
  /** "leader": this tab holds the connection its origin's tabs share; "follower": it uses
   * another tab's; null: its connection is its own, or it has none yet. */
  readonly sharing: "leader" | "follower" | null;
}

/** A client of its own: DEFAULTS, then the page's rendered configuration (#pushgateway-config in
 * the document of `config.window`, or the global document), then `config`. */
export declare function createClient(config?: Config): Client;
/** The page's client: the configuration {% pushgateway_script %} rendered into `doc`, and
 * its forms' client fields filled in on submit. */
export declare function fromDocument(doc: Document): Client;

/** The event dispatched on a fragment at each callback of its channel (it bubbles). */
export type ChangeEvent<Data = unknown> = CustomEvent<PushEvent<Data>>;

export interface WatchFragmentsOptions {
  /** The observer of later changes; the global MutationObserver by default. */
  MutationObserver?: typeof MutationObserver;
}

/** Follows the fragments under `root` (elements with FACTS.fragmentAttributes.channel): each
 * is subscribed on `client` while it is in the document and hears FACTS.fragmentEvent.
 * fromDocument() does it for its document. Returns stop(). */
export declare function watchFragments(
  client: Client,
  root: Document | Element,
  options?: WatchFragmentsOptions,
): () => void;
export declare const DEFAULTS: Readonly<Required<Pick<Config,
  "url" | "positionsUrl" | "throttle" | "pollDown" | "pollUp" | "backoffInitial" | "backoffMax" |
  "stableAfter" | "restartDelay" | "pingInterval" | "pongTimeout" | "checkAfterSubscribe" |
  "resyncGrace" | "ignoreOwn" | "share" | "transport" | "websocketRetry" | "streamIdle">>>;

/** The protocol's facts, generated from pushgateway/constants.py (docs/protocol.md). */
export interface Facts {
  version: number;
  /** Close codes the server sends, by name. */
  closeCodes: Readonly<Record<string, number>>;
  /** Closes after which the client waits its longest backoff. */
  policyCloses: readonly number[];
  /** Closes of a server that restarts on purpose: the client comes back within restartDelay. */
  restartCloses: readonly number[];
  /** The code the client closes its own socket with when no pong came in time. */
  noPongClose: number;
  /** The `code` of an error frame, by name. */
  errorCodes: Readonly<Record<string, string>>;
  /** What a channel name matches (a regular expression's source, without anchors). */
  channelPattern: string;
  /** How a private channel's name starts: subscribing to one takes a token. */
  privatePrefix: string;
  /** Channels one request to the positions view may ask about. */
  maxPositionsPerRequest: number;
  /** ms without a byte after which a stream is dead (its keep-alives come more often). */
  streamIdle: number;
  /** The response header that asks the page to check positions soon after a stream opens. */
  streamRecheckHeader: string;
  clientHeader: string;
  clientField: string;
  /** Hex characters of the SHA-256 of a client id that hints carry instead of the id. */
  clientTagLength: number;
  /** The id of the element the template tag renders the configuration into. */
  configElement: string;
  /** The attributes of a fragment ({% pushgateway_fragment %}): channel, since, token, throttle. */
  fragmentAttributes: Readonly<{ channel: string; since: string; token: string; throttle: string }>;
  /** The event a fragment hears at each callback: "pushgateway:change". */
  fragmentEvent: string;
  /** What a "." in a channel name becomes in its Bayeux (Faye) name. */
  bayeuxDot: string;
  /** The browser's defaults that {% pushgateway_script %} may override. */
  defaults: Readonly<{
    url: string;
    positionsUrl: string;
    streamUrl: string;
    throttle: number;
    pollDown: number;
    pollUp: number;
  }>;
}
export declare const FACTS: Readonly<Facts>;
export declare const CLIENT_HEADER: "X-PushGateway-Client";
export declare const CLIENT_FIELD: "pushgateway_client";

declare global {
  /** The page's client, set by the classic script from {% pushgateway_script %}. */
  var PushGateway: Client & { createClient: typeof createClient };
  interface HTMLElementEventMap {
    "pushgateway:change": ChangeEvent;
  }
  interface DocumentEventMap {
    "pushgateway:change": ChangeEvent;
  }
}
