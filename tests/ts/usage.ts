// Compiled (not run) by tests/integration/test_typescript.py with `tsc --noEmit --strict`: what a
// TypeScript user writes against the declarations, through the ES module and the global.
import push, {
  createClient,
  watchFragments,
  FACTS,
  type ChangeEvent,
  type PushEvent,
  type Position,
} from "../../static/js/pushgateway.mjs";

interface CommentHint {
  model: string;
  pk: string;
  action: "created" | "updated" | "deleted";
}

// The page's rendered configuration, then these options.
const client = createClient({ throttle: 250, window });
const unsubscribe: () => void = client.subscribe<CommentHint>(
  "comments-7",
  (event: PushEvent<CommentHint>) => {
    if (event.reason === "message" && event.data !== null) {
      const pk: string = event.data.pk;
      console.log(pk, event.count);
    }
  },
  { getToken: async (channel) => `token-for-${channel}` },
);
unsubscribe();

const start: Position = { epoch: "", seq: 0 };
push.createClient({ positions: { "comments-7": start } }).onStateChange((state, previous) => {
  const connected: boolean = state === "connected" && previous !== "idle";
  console.log(connected);
});

// The classic script's global.
globalThis.PushGateway.subscribe("events", ({ reason }) => console.log(reason));
void client.fetch("/comments/", { method: "POST" });
const id: string = client.clientId;
console.log(id);
const role: "leader" | "follower" | null = createClient({ share: false }).sharing;
console.log(role);

// The protocol's facts.
const perRequest: number = FACTS.maxPositionsPerRequest;
const positionsUrl: string = FACTS.defaults.positionsUrl;
const forbidden: string | undefined = FACTS.errorCodes.FORBIDDEN;
console.log(perRequest, positionsUrl, forbidden, push.FACTS.version);

// Transports: the WebSocket falling back to the stream, or either alone.
const streaming = createClient({ transport: "stream", streamUrl: FACTS.defaults.streamUrl });
const onStream: boolean = streaming.transport === "stream";
createClient({ transport: "auto", websocketRetry: 600_000, streamIdle: FACTS.streamIdle });
console.log(onStream);
// Fragments: elements that follow a channel, and the event they hear.
const stop: () => void = watchFragments(client, document.body);
document.addEventListener("pushgateway:change", (event) => {
  const target = event.target as HTMLElement;
  const { channel, reason }: PushEvent = event.detail;
  console.log(target.getAttribute(FACTS.fragmentAttributes.channel), channel, reason);
});
const typed = (event: ChangeEvent<CommentHint>) => event.detail.data?.pk;
console.log(typed);
stop();
client.subscribe("comments-7", () => {}, { since: start });
