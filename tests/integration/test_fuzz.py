"""Generated hostile frames: every one ends in a reply, an error frame or a documented close.

Hypothesis generates client frames (well-formed frames of every type with hostile field
values, random JSON, random text with lone surrogates, huge numbers, NaN and Infinity,
deep nesting, duplicate keys, very long strings, binary) and feeds them to the pure
protocol Session, to the WebSocket-over-HTTP view and to a real daphne. Runs are
derandomised: the same code and test selection get the same frames (Hypothesis also mixes in
constants from the project's loaded modules, so a run of this file alone differs a little
from the whole suite's). What the fuzzing found is kept as named regression tests in
test_protocol.py and test_grip.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import Counter

import jwt
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from channels_app.websocket_events import encode_events, parse_events
from pushgateway import protocol
from pushgateway.constants import ErrorCode
from pushgateway.protocol import Position, Session
from pushgateway.ratelimit import TokenBucket

# At least this many frames per run, in every test that counts them.
SESSION_FRAMES = 10_000
FUZZ = hypothesis_settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SERVER_TYPES = {"subscribed", "unsubscribed", "message", "resync", "error", "pong"}

# Values a client may put in any field. Mostly picked from known troublemakers, which costs
# Hypothesis one choice, with generated values mixed in: generating a value costs far more
# than the session spends on it, and the run must stay short.
NASTY = [
    None,
    True,
    0,
    -1,
    1.5,
    2**53 - 1,
    2**53,
    2**63,
    float("nan"),
    float("inf"),
    float("-inf"),
    "",
    " ",
    "\ud800",
    "\udfff\ud800",
    "\x00",
    "é",
    "𝄞",
    [],
    {},
    [[[[]]]],
    {"epoch": "e", "seq": 1},
    {"epoch": "e"},
    {"epoch": 1, "seq": "1"},
    {"epoch": "x" * 33, "seq": 1},
    {"epoch": "e", "seq": -1},
    {"epoch": "e", "seq": 2**53},
    {"epoch": "e", "seq": True},
    {"epoch": "\ud800", "seq": 0},
    {"type": "subscribe"},
    "pong",
    "Subscribe",
    "subscribe ",
    "private-",
    "a b",
    "ü",
    "x" * 101,
]
NAMES = ["a", "b", "c", "comments-7", "private-a", "x" * 100]
TYPES = ["subscribe"] * 6 + ["unsubscribe"] * 3 + ["ping"] * 2
SINCES = [None, {"epoch": "e", "seq": 1}, {"epoch": "", "seq": 0}, {"epoch": "e", "seq": 2**53 - 1}]
TOKENS = ["ok", "bad", "ok:\ud800", "\ud800", "a:b:c"]

any_text = st.text(st.characters(), max_size=8)  # every code point, lone surrogates too
numbers = st.one_of(st.integers(), st.floats())  # floats include NaN and the infinities
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, any_text),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(any_text, inner, max_size=3)
    ),
    max_leaves=4,
)
# Built from their size, so that the strategies' reprs stay short.
huge = st.one_of(
    st.sampled_from([300, 4000]).map(lambda digits: 10**digits),
    st.sampled_from([3000, 5000]).map(lambda size: "x" * size),
)
values = st.one_of(st.sampled_from(NASTY), st.sampled_from(NASTY), json_values, huge)
names = st.one_of(st.sampled_from(NAMES), st.text("abxyzAZ09._-", min_size=1, max_size=4))


def mostly(draw, good, bad):
    """Seven times in eight a value from `good`: frames mostly valid with hostile values
    mixed in get further into the protocol than random ones."""
    return draw(bad if draw(st.integers(0, 7)) == 0 else good)


@st.composite
def well_formed(draw) -> str:
    """A JSON object shaped like a client frame, with hostile values; keys may repeat."""
    pairs = [("type", mostly(draw, st.sampled_from(TYPES), values))]
    if draw(st.integers(0, 9)):
        pairs.append(("channel", mostly(draw, names, values)))
    optional = draw(st.integers(0, 63))
    if optional & 1:
        pairs.append(("since", mostly(draw, st.sampled_from(SINCES), values)))
    if optional & 2:
        pairs.append(("token", mostly(draw, st.sampled_from(TOKENS), values)))
    if optional & 60 == 60:  # a key twice: the last one counts
        pairs.append((draw(st.sampled_from(["type", "channel", "since"])), draw(values)))
    if optional & 12 == 12:
        pairs.append((draw(any_text), draw(values)))
    if draw(st.booleans()):
        pairs.reverse()
    ascii_only = draw(st.booleans())
    items = ",".join(f"{dumps(k, ascii_only)}:{dumps(v, ascii_only)}" for k, v in pairs)
    return "{" + items + "}"


def dumps(value: object, ensure_ascii: bool) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, allow_nan=True)  # NaN and Infinity


@st.composite
def long_or_deep(draw) -> str:
    unit = draw(st.sampled_from(["[", '{"a":', "x", "\ud800", "é", " ", '"', "\\"]))
    size = draw(st.sampled_from([2000, 4096, 4097, 20_000, 65_536, 65_537, 70_000]))
    text = unit * (size // len(unit.encode("utf-8", "surrogatepass")))
    return draw(st.sampled_from(["", '{"type":"subscribe","channel":'])) + text


texts = st.one_of(
    st.binary(max_size=16),
    json_values.map(lambda v: dumps(v, False)),
    any_text,
    long_or_deep(),
    st.sampled_from(["NaN", "Infinity", "-Infinity", '{"type":NaN}', "1" * 4000, "", "{}"]),
)
# A client frame: text, or bytes for a binary frame. Most are shaped like real frames, so
# the fuzzing reaches subscriptions, their limits and the unsubscribes that follow.
client_frames = st.one_of(well_formed(), well_formed(), well_formed(), well_formed(), texts)


def check_frame(text: str) -> dict:
    """A server frame as a client sees it: UTF-8 JSON text of a known type."""
    assert isinstance(text, str)
    text.encode("utf-8")  # strict: a lone surrogate cannot be sent
    frame = json.loads(text, parse_constant=pytest.fail)  # NaN and Infinity are not JSON
    assert isinstance(frame, dict) and frame["type"] in SERVER_TYPES, frame
    if frame["type"] == "error":
        assert frame["code"] in set(ErrorCode), frame
        assert isinstance(frame["message"], str) and frame["message"]
        assert frame["channel"] is None or not protocol.channel_error(frame["channel"])
    return frame


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Transport:
    """Carries out replies as the consumer does, checking each one; counts what it saw."""

    def __init__(self) -> None:
        self.frames = 0
        self.seen: Counter[str] = Counter()  # frame types and error codes sent
        self.clock = FakeClock()
        self.new_session()

    def new_session(self) -> None:
        # Small limits, so that generated frames reach them.
        churn = TokenBucket(0.2, 3, self.clock)
        self.session = Session(authorize=lambda c, t: t == "ok", max_subscriptions=3, churn=churn)

    def send(self, text: str) -> None:
        frame = check_frame(text)
        self.seen[frame.get("code", frame["type"])] += 1

    def feed(self, frame: str | bytes, seconds: float) -> None:
        self.frames += 1
        self.clock.now += seconds  # backwards too: another host's clock, behind Pushpin
        before = set(self.session.subscriptions)
        if isinstance(frame, bytes):
            reply = self.session.receive_bytes(frame)
        else:
            reply = self.session.receive_text(frame)
        assert reply.close is None or 4000 <= reply.close <= 4999
        # Every frame is answered: with a frame, or with a subscription to confirm.
        assert len(reply.frames) + len(reply.subscribe) == 1, reply
        for subscribe in reply.subscribe:
            assert not protocol.channel_error(subscribe.channel)
            assert subscribe.since is None or isinstance(subscribe.since, Position)
            assert subscribe.joined == (subscribe.channel in before)
            if subscribe.channel == "c" and not subscribe.joined:  # the layer is down
                self.send(self.session.subscribe_failed("c"))
                continue
            position = Position("e", 1) if seconds > 1 else None
            self.send(protocol.subscribed_frame(subscribe.channel, position, subscribe.since))
        for text in reply.frames:
            self.send(text)
        assert set(reply.unsubscribe) <= before
        assert len(self.session.subscriptions) <= self.session.max_subscriptions
        if reply.close is not None:
            self.seen[f"close {reply.close}"] += 1
            self.new_session()  # the transport closed the connection; a client reconnects


def test_the_session_answers_every_generated_frame_without_raising():
    transport = Transport()

    @hypothesis_settings(FUZZ, max_examples=SESSION_FRAMES // 10)
    @given(
        st.lists(
            st.tuples(client_frames, st.sampled_from([0, 0, 0.01, 2, -3])),
            min_size=10,
            max_size=12,
        )
    )
    def fuzz(frames):
        for frame, seconds in frames:
            transport.feed(frame, seconds)

    started = time.monotonic()
    fuzz()
    print(
        f"fuzzed {transport.frames} frames in {time.monotonic() - started:.1f}s: {transport.seen}"
    )
    assert transport.frames >= SESSION_FRAMES
    # The frames reached every answer and every close the protocol has.
    assert set(transport.seen) == set(ErrorCode) | {
        "subscribed",
        "unsubscribed",
        "pong",
        "close 4008",
        "close 4009",
    }


# The WebSocket-over-HTTP view.

GRIP_KEY = "grip-test-key-that-is-long-enough-for-hs256"
GRIP = {
    "BACKEND": "pushgateway.backends.fanout.FanoutBackend",
    "OPTIONS": {"GRIP_URL": f"http://127.0.0.1:1?key={GRIP_KEY}&verify-iss=pushpin"},
}
header_text = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=20),
    st.sampled_from(["²", "-1", "1e9", "a,b,,c", "a=e.1,b=.x", "5@1e9", "nan@1", "1@-1"]),
    st.sampled_from([25, 5000]).map(lambda digits: "9" * digits),
    st.lists(names, max_size=3).map(",".join),
    st.lists(st.tuples(names, st.text(max_size=34), st.integers(-1, 2**54)), max_size=3).map(
        lambda items: ",".join(f"{c}={e}.{s}" for c, e, s in items)
    ),
    st.tuples(st.floats(), st.floats()).map(lambda pair: f"{pair[0]!r}@{pair[1]!r}"),
)
event_kinds = st.sampled_from(
    ["OPEN", "TEXT", "BINARY", "PING", "PONG", "CLOSE", "DISCONNECT", "X"]
)


@st.composite
def signed_states(draw) -> str:
    """A state as the view signs it, for the connection "c" (so the fuzzing reaches past
    its verification): public channels only, as a connection without tokens has."""
    from channels_app.gripstate import ProxyState, dump_state

    channels = draw(st.lists(names.filter(lambda n: not n.startswith("private-")), max_size=4))
    positions = st.one_of(st.none(), st.sampled_from([Position("e", 1), Position("", 0)]))
    subscriptions = {c: draw(positions) for c in channels if not protocol.channel_error(c)}
    churn = draw(st.sampled_from([None, (0.0, 1e9), (100.0, 0.0), (3.5, -5.0)]))
    return dump_state(ProxyState(subscriptions, draw(st.integers(0, 21)), churn), "c")


@st.composite
def bodies(draw) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=80))  # not even an events body
    events = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(event_kinds)
        if kind in ("TEXT", "BINARY", "CLOSE") or draw(st.booleans()):
            frame = draw(client_frames)
            content = frame if isinstance(frame, bytes) else frame.encode("utf-8", "surrogatepass")
            events.append((kind, content))
        else:
            events.append((kind, None))
    return encode_events(events)


def test_the_grip_view_answers_every_generated_body_without_a_500(client, settings, caplog):
    settings.PUSHGATEWAY = GRIP
    grip_sig = jwt.encode({"iss": "pushpin", "exp": int(time.time()) + 3600}, GRIP_KEY, "HS256")
    requests = []

    @hypothesis_settings(FUZZ, max_examples=600)
    @given(
        bodies(),
        st.fixed_dictionaries(
            {},
            optional={
                "Meta-State": st.one_of(header_text, signed_states()),
                "Connection-Id": st.sampled_from(["c", "d", ""]),
                **{h: header_text for h in ("Meta-Subs", "Meta-Pos", "Origin")},
            },
        ),
    )
    def fuzz(body, headers):
        response = client.post(
            "/ws/pushgateway/",
            body,
            content_type="application/websocket-events",
            headers={"Grip-Sig": grip_sig, **headers},
        )
        requests.append(response.status_code)
        assert response.status_code in (200, 400, 403), response
        if response.status_code == 200:
            sent_closes = [c for k, c in parse_events(body) if k == "CLOSE"]
            for kind, content in parse_events(response.content):
                if kind == "TEXT" and content.startswith(b"m:"):
                    assert not leaks(content[2:].decode("utf-8"))  # no token is valid here
                elif kind == "TEXT":
                    control = json.loads(content.removeprefix(b"c:"))
                    assert control["type"] in ("subscribe", "unsubscribe")
                    assert not protocol.channel_error(control["channel"])
                elif kind == "CLOSE" and content not in sent_closes:  # ours, not an echo
                    assert 4000 <= int.from_bytes(content[:2], "big") <= 4999

    with caplog.at_level(logging.ERROR, logger="django.request"):
        fuzz()
    assert [r for r in caplog.records if r.name == "django.request"] == []
    assert len(requests) >= 600 and 200 in requests


# A real daphne: the same frames over real sockets.

DAPHNE_FRAMES = 3000
ANSWERS = {"subscribed", "unsubscribed", "pong", "error"}  # one for each frame


class Sockets:
    """A few client connections to one daphne; a closed one is replaced by a fresh one.

    Each frame is sent once the previous one is answered. A Session of the test's own
    mirrors each connection's error count, so the test knows which frame must close it."""

    def __init__(self, daphne, count: int) -> None:
        self.daphne = daphne
        self.connections = contextlib.ExitStack()  # every one opened, closed at the end
        self.open = [self.connect() for _ in range(count)]
        self.frames = 0
        self.closes: Counter[int] = Counter()

    def connect(self):
        return self.connections.enter_context(self.daphne.connect()), Session()

    def check(self, text: str) -> dict:
        return check_frame(text)

    def send_text(self, ws, mirror: Session, frame: str) -> int | None:
        """Send a text frame; returns the close it must cause (None: it is answered)."""
        close = mirror.receive_text(frame).close
        try:
            ws.send(frame.encode("utf-8"), text=True)
        except UnicodeEncodeError:  # a lone surrogate: not UTF-8, as some clients send
            ws.send(frame.encode("utf-8", "surrogatepass"), text=True)
            # The server's WebSocket library drops the connection (1006, no close frame)
            # before the application sees it.
            close = 1006
        return close

    def exchange(self, index: int, frame: str | bytes) -> None:
        from websockets.exceptions import ConnectionClosed

        ws, mirror = self.open[index]
        self.frames += 1
        if isinstance(frame, bytes):
            close = mirror.receive_bytes(frame).close
            ws.send(frame)
        else:
            close = self.send_text(ws, mirror, frame)
        try:
            if close != 1006:
                while self.check(ws.recv(timeout=10))["type"] not in ANSWERS:
                    pass  # a resync or message on a channel it subscribed to
            if close is None:
                return
            ws.recv(timeout=10)
        except ConnectionClosed:
            assert ws.protocol.close_code == close
            self.closes[close] += 1
            self.open[index] = self.connect()
            return
        raise AssertionError(f"not closed with {close} after {frame!r:.200}")


def send_generated(sockets: Sockets, total: int, batch: int) -> None:
    """`total` generated frames, `batch` per example, each to one of `sockets` at random."""
    last = len(sockets.open) - 1

    @hypothesis_settings(FUZZ, max_examples=total // batch)
    @given(st.lists(st.tuples(st.integers(0, last), client_frames), min_size=batch, max_size=batch))
    def fuzz(frames):
        for index, frame in frames:
            sockets.exchange(index, frame)

    fuzz()


@pytest.mark.servers
def test_a_real_daphne_answers_generated_frames_and_keeps_serving(redis, start_daphne):
    from tests.support.servers import recv_json, run_python, subscribe

    daphne = start_daphne(redis.url)
    sockets = Sockets(daphne, 4)

    send_generated(sockets, DAPHNE_FRAMES, 15)
    print(f"sent {sockets.frames} frames to daphne; closes: {dict(sockets.closes)}")
    assert sockets.frames >= DAPHNE_FRAMES
    survivor = next(ws for ws, _ in sockets.open if ws.protocol.close_code is None)
    with daphne.connect() as fresh:
        for ws in (survivor, fresh):
            subscribe(ws, "after-the-fuzz")
        result = run_python(
            "import pushgateway; pushgateway.publish('after-the-fuzz', 1)", redis.url
        )
        assert result.returncode == 0, result.stderr
        for ws in (survivor, fresh):
            frame = recv_json(ws)
            while frame["type"] != "message":  # answers still on their way are fine
                frame = recv_json(ws)
            assert (frame["channel"], frame["data"]) == ("after-the-fuzz", 1)
    sockets.connections.close()
    log = daphne.process.log()
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]


# The positions view: the same values in query strings.

query_items = st.one_of(
    names,
    st.tuples(names, st.sampled_from(TOKENS)).map(":".join),
    any_text,
    st.binary(max_size=12).map(lambda raw: raw.decode("latin-1")),
)


def test_the_positions_view_answers_every_generated_query_without_a_500(client, caplog):
    from urllib.parse import quote

    statuses = Counter()

    @hypothesis_settings(FUZZ, max_examples=200)
    @given(st.lists(query_items, max_size=8), st.sampled_from(["c", "c", "C", "c[]", ""]))
    def fuzz(items, key):
        encoded = (quote(i.encode("utf-8", "surrogatepass"), safe="") for i in items)
        query = "&".join(f"{key}={item}" for item in encoded)
        response = client.get("/pushgateway/positions/", QUERY_STRING=query)
        statuses[response.status_code] += 1
        assert response.status_code == 200, response
        body = response.json()
        assert set(body) == {"positions", "errors"}
        assert set(body["errors"].values()) <= {ErrorCode.INVALID_CHANNEL, ErrorCode.FORBIDDEN}

    with caplog.at_level(logging.ERROR, logger="django.request"):
        fuzz()
    assert [r for r in caplog.records if r.name == "django.request"] == []
    assert statuses[200] >= 200


# A real Pushpin in front of daphne (issue 16): what a client can send through the proxy.
# Pushpin strips a client's Meta-* headers only on real WebSocket connections; a plain HTTP
# request keeps them and is signed like any other. No answer may tell the position of a
# private channel (the fuzzing holds no valid token) or be a server error.

SECRET = "private-a"  # in NAMES: generated frames subscribe to it, with tokens that fail
LEAKING_TYPES = {"subscribed", "resync", "message"}
PROXY_REQUESTS = 300
PROXY_FRAMES = 600

meta_values = st.one_of(
    header_text,
    st.sampled_from([SECRET, f"{SECRET},a", f"{SECRET}=e.1", "x:y:z", "e30:1:abc"]),
    st.text("abcdefXYZ0189:_-", max_size=60),  # shaped like a signed value
)
content_types = st.sampled_from(
    [
        "Application/websocket-events",
        "APPLICATION/WEBSOCKET-EVENTS",
        "application/Websocket-Events",
        "application/websocket-events",  # Pushpin's guard refuses it
        "application/websocket-events; charset=utf-8",
        " application/websocket-events",
        "text/plain",
    ]
)
proxy_headers = st.fixed_dictionaries(
    {"Content-Type": content_types},
    optional={
        h: meta_values
        for h in (
            "Meta-State",
            "Meta-Subs",
            "Meta-Pos",
            "Meta-Errors",
            "Meta-Churn",
            "Connection-Id",
        )
    },
)


def raw(headers: dict[str, str]) -> dict[str, bytes]:
    """Header values as UTF-8 bytes, without the characters that would end a header."""
    return {
        k: v.encode("utf-8", "surrogatepass").translate(None, b"\r\n\0") for k, v in headers.items()
    }


def leaks(text: str) -> bool:
    """Whether a frame the client received tells anything of the private channel."""
    frame = check_frame(text)
    return frame["type"] in LEAKING_TYPES and frame["channel"] == SECRET


@pytest.mark.servers
def test_meta_headers_and_bodies_posted_through_a_real_pushpin_leak_nothing(pushpin_origin, redis):
    import http.client
    import re

    from tests.integration.test_pushpin import advance

    advance(redis.url, SECRET)
    statuses: Counter[int | str] = Counter()
    leaked = []

    @hypothesis_settings(FUZZ, max_examples=PROXY_REQUESTS)
    @given(bodies(), proxy_headers)
    def fuzz(body, headers):
        connection = http.client.HTTPConnection("127.0.0.1", pushpin_origin.port, timeout=10)
        try:
            headers = {"Origin": pushpin_origin.url, **headers}
            connection.request("POST", "/ws/pushgateway/", body=body, headers=raw(headers))
            response = connection.getresponse()
            answer = response.read()
        except ConnectionResetError:  # Pushpin's answer to more than about 8 KiB of headers
            statuses["reset by Pushpin"] += 1
            return
        finally:
            connection.close()
        statuses[response.status] += 1
        assert response.status < 500, (response.status, answer[:300])
        if re.search(rb'"type":"(subscribed|resync|message)","channel":"private-a"', answer):
            leaked.append((headers, body))
        assert not any(h.lower().startswith("set-meta") for h, _ in response.getheaders())

    fuzz()
    print(f"posted {sum(statuses.values())} requests through Pushpin: {dict(statuses)}")
    assert leaked == []
    assert sum(statuses.values()) >= PROXY_REQUESTS
    assert set(statuses) <= {400, 403, "reset by Pushpin"} and statuses[400] and statuses[403]
    assert "Traceback" not in pushpin_origin.origin.process.log()


class ProxiedSockets(Sockets):
    """Sockets through Pushpin, each opened with generated Meta-* handshake headers; counts
    the frames that tell something of the private channel."""

    def __init__(self, pushpin, count: int, headers) -> None:
        self.pushpin, self.headers, self.leaked = pushpin, headers, []
        super().__init__(pushpin, count)

    def connect(self):
        from websockets.sync.client import connect

        url = f"ws://127.0.0.1:{self.pushpin.port}/ws/pushgateway/"
        headers = self.headers()
        ws = connect(url, origin=self.pushpin.url, open_timeout=10, additional_headers=headers)
        return self.connections.enter_context(ws), Session()

    def send_text(self, ws, mirror: Session, frame: str) -> int | None:
        # Pushpin passes text that is not UTF-8 on, and the view reads it with replacement
        # characters.
        raw = frame.encode("utf-8", "surrogatepass")
        ws.send(raw, text=True)
        return mirror.receive_text(raw.decode("utf-8", "replace")).close

    def check(self, text: str) -> dict:
        if leaks(text):
            self.leaked.append(text)
        return check_frame(text)


@pytest.mark.servers
def test_frames_on_real_websockets_through_pushpin_leak_nothing(pushpin_origin, redis):
    import random

    from tests.integration.test_pushpin import advance

    advance(redis.url, SECRET)
    chosen = random.Random(16)  # handshake headers: a fixed sequence, like the frames
    forged = [{}, {"Meta-Subs": SECRET, "Meta-Pos": f"{SECRET}=x.0"}, {"Meta-State": "x:y:z"}]
    sockets = ProxiedSockets(pushpin_origin, 3, lambda: chosen.choice(forged))

    send_generated(sockets, PROXY_FRAMES, 10)
    print(f"sent {sockets.frames} frames through Pushpin; closes: {dict(sockets.closes)}")
    assert sockets.frames >= PROXY_FRAMES and sockets.leaked == []
    assert set(sockets.closes) <= {4008, 4009}  # never 1011
    sockets.connections.close()
    assert "Traceback" not in pushpin_origin.origin.process.log()


# The positions view's POST body: JSON mostly in the expected shape, with hostile values.

body_tokens = st.dictionaries(names, st.one_of(st.sampled_from(TOKENS), values), max_size=4)


@st.composite
def positions_bodies(draw):
    if draw(st.integers(0, 7)) == 0:  # not even the shape: any JSON, or bytes that are not
        return draw(st.one_of(values.map(json.dumps), st.binary(max_size=16)))
    count = draw(st.integers(0, 8))
    body = {"channels": [mostly(draw, names, values) for _ in range(count)]}
    if draw(st.booleans()):
        body["tokens"] = mostly(draw, body_tokens, values)
    return json.dumps(body, ensure_ascii=False)


def test_the_positions_view_answers_every_generated_body_without_a_500(client, caplog):
    statuses = Counter()

    @hypothesis_settings(FUZZ, max_examples=200)
    @given(positions_bodies())
    def fuzz(body):
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogatepass")
        response = client.post("/pushgateway/positions/", body, content_type="application/json")
        statuses[response.status_code] += 1
        assert response.status_code in (200, 400), response
        answer = response.json()
        if response.status_code == 400:
            assert set(answer) == {"error"}
            return
        assert set(answer) == {"positions", "errors"}
        assert set(answer["errors"].values()) <= {ErrorCode.INVALID_CHANNEL, ErrorCode.FORBIDDEN}

    with caplog.at_level(logging.ERROR, logger="django.request"):
        fuzz()
    assert [r for r in caplog.records if r.name == "django.request"] == []
    assert statuses[200] >= 50 and statuses[400] >= 20  # both answers explored


# The stream's opening body (channels_app.stream, channels_app.gripstream): JSON mostly in
# the expected shape, its frames the generated client frames.


@st.composite
def stream_bodies(draw):
    if draw(st.integers(0, 7)) == 0:  # not even the shape: any JSON, or bytes that are not
        return draw(st.one_of(values.map(json.dumps), st.binary(max_size=16)))
    frames = []
    for _ in range(draw(st.integers(0, 6))):
        text = draw(client_frames)
        try:
            frames.append(json.loads(text))
        except (ValueError, TypeError, RecursionError):
            frames.append(text if isinstance(text, str) else None)
    return json.dumps({"frames": mostly(draw, st.just(frames), values)}, ensure_ascii=False)


def stream_events(text: str) -> list[tuple[str, str]]:
    """(event name, data) of each event in a Server-Sent Events body."""
    events = []
    for block in text.split("\n\n")[:-1]:
        lines = block.split("\n")
        name = lines[0][7:] if lines[0].startswith("event: ") else "message"
        [data] = [line[6:] for line in lines if line.startswith("data: ")]
        events.append((name, data))
    return events


def test_the_grip_stream_view_answers_every_generated_body_without_a_500(client, settings, caplog):
    from channels_app.gripstream import NO_CHANNEL
    from pushgateway.constants import STREAM_PATH

    settings.PUSHGATEWAY = GRIP
    grip_sig = jwt.encode({"iss": "pushpin", "exp": int(time.time()) + 3600}, GRIP_KEY, "HS256")
    statuses = Counter()

    @hypothesis_settings(FUZZ, max_examples=300)
    @given(stream_bodies())
    def fuzz(body):
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogatepass")
        headers = {"Grip-Sig": grip_sig, "Origin": "http://testserver"}
        response = client.post(STREAM_PATH, body, content_type="application/json", headers=headers)
        statuses[response.status_code] += 1
        assert response.status_code in (200, 400), response
        if response.status_code == 400:
            return
        for name, data in stream_events(response.content.decode("utf-8")):  # strict UTF-8
            if name == "close":
                assert json.loads(data)["code"] in (4008, 4009)
            else:
                assert name == "message" and not leaks(data)
        held = response.get("Grip-Channel")
        for channel in held.split(", ") if held else []:
            assert channel == NO_CHANNEL or not protocol.channel_error(channel)
            assert channel != SECRET  # its token never verifies

    with caplog.at_level(logging.ERROR, logger="django.request"):
        fuzz()
    assert [r for r in caplog.records if r.name == "django.request"] == []
    assert statuses[200] >= 100 and statuses[400] >= 20  # both answers explored


def test_a_stream_body_is_frames_or_a_reason_never_an_exception():
    """What the ASGI stream endpoint parses before it answers 400 or opens the stream."""
    kinds = Counter()

    @hypothesis_settings(FUZZ, max_examples=500)
    @given(st.one_of(stream_bodies(), st.binary(max_size=64)))
    def fuzz(body):
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogatepass")
        frames = protocol.stream_frames(body)
        kinds[type(frames).__name__] += 1
        if isinstance(frames, list):
            session = Session()
            for text in frames:
                session.receive_text(text)  # a Reply, never an exception

    fuzz()
    assert kinds["list"] >= 100 and kinds["str"] >= 50
