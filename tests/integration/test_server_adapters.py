"""Contract tests of pushgateway.adapters' server parts against the installed libraries.

Each adapter relies on something its library does not promise: where autobahn formats its
debug lines, daphne's Twisted transport, a server's `send` being a coroutine. These tests
fail when a release changes that, instead of the adapter breaking silently. The servers run
for real, serving tests/support/server_probe.py or the project. How servers detect ASGI 3 is
asked of their own code: the applications need no adapter for it (asgiref's public marker).
"""

import asyncio
import contextlib
import inspect
import json
import socket
import sys
import time
from collections import deque

import daphne.cli
import pytest
from asgiref.compatibility import guarantee_single_callable
from autobahn.websocket import protocol as autobahn_protocol
from uvicorn import Config
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Opcode
from websockets.uri import parse_uri

from channels_app.asgi import application
from channels_app.routing import pushgateway_socket
from pushgateway import adapters
from tests.support import server_probe
from tests.support.servers import (
    PYTHON,
    Daphne,
    Process,
    free_port,
    listening,
    project_env,
    recv_json,
    run_python,
    subscribe,
)

PROBE = "tests.support.server_probe:application"
SERVERS = {
    "daphne": [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", PROBE],
    "uvicorn": [
        *[PYTHON, "-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}"],
        *["--ws", "websockets-sansio", PROBE],
    ],
    "uvicorn-websockets": [
        *[PYTHON, "-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}"],
        *["--ws", "websockets", PROBE],
    ],
    "uvicorn-wsproto": [
        *[PYTHON, "-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}"],
        *["--ws", "wsproto", PROBE],
    ],
    "hypercorn": [PYTHON, "-m", "hypercorn", "-b", "127.0.0.1:{port}", PROBE],
    "gunicorn": [
        *[PYTHON, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "1"],
        *["-b", "127.0.0.1:{port}", PROBE],
    ],
}


# autobahn: lazy_autobahn_debug_formatting


def test_autobahn_still_pretty_prints_debug_lines_where_the_adapter_expects():
    # The adapter relies on these functions calling the module-level pformat() only to
    # build a debug line; if autobahn changes that, the adapter must be revisited.
    assert hasattr(autobahn_protocol, "pformat")
    for name in adapters.AUTOBAHN_LOG_ONLY_PFORMAT:
        owner = next(
            cls
            for cls in (
                autobahn_protocol.WebSocketProtocol,
                autobahn_protocol.WebSocketClientProtocol,
            )
            if name in vars(cls)
        )
        source = inspect.getsource(vars(owner)[name])
        assert "pformat(" in source, name
        debug_call = source[: source.index("pformat(")][-300:]
        assert "self.log.debug(" in debug_call, name


def test_autobahn_debug_formatting_is_skipped_only_for_debug_lines():
    assert adapters.lazy_autobahn_debug_formatting()
    lazy = autobahn_protocol.pformat
    assert lazy.lazy_for is not None

    def _connectionMade():  # noqa: N802 (named like autobahn's caller)
        return lazy([("option", 1)])

    assert _connectionMade() == ""  # txaio logs at info: the line would be dropped
    assert lazy([("option", 1)]) == "[('option', 1)]"  # any other caller: real pformat
    assert str(autobahn_protocol.Timings()) == "{}"


# The ASGI 3 interface, detected without a wrapper (no adapter: asgiref's public marker)


@pytest.mark.parametrize("app", [application, pushgateway_socket], ids=["asgi", "routing"])
def test_servers_take_the_applications_for_asgi3_as_they_are(app):
    # daphne (and Channels' test communicators) go through asgiref's compatibility check:
    # a double-callable application would get a wrapper coroutine per socket.
    assert daphne.cli.guarantee_single_callable is guarantee_single_callable
    assert guarantee_single_callable(app) is app
    config = Config(app=app, lifespan="off")  # uvicorn asks asyncio (inspect from 3.14)
    config.load()
    assert config.interface == "asgi3"
    if sys.version_info >= (3, 12):  # hypercorn asks inspect, which honours the marker
        hypercorn = pytest.importorskip("hypercorn.utils", reason="comes with the bench extra")
        assert hypercorn.is_asgi(app)


# daphne's Twisted transport and the servers' `send` coroutine, under the real servers


class Client:
    """A WebSocket client that reads only when told to (websockets' sans-I/O protocol over
    a plain socket with a small receive buffer), so a server sees a client stop reading."""

    def __init__(self, port: int, receive_buffer: int = 4096, deflate: bool = False):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", port))
        extensions = [ClientPerMessageDeflateFactory()] if deflate else None
        uri = parse_uri(f"ws://127.0.0.1:{port}/")
        self.protocol = ClientProtocol(uri, max_size=None, extensions=extensions)
        self.protocol.send_request(self.protocol.connect())
        self.events = deque()
        self.pongs = []
        self.flush()
        while not self.events:
            self.read()
        assert self.events.popleft().status_code == 101

    def flush(self) -> None:
        for data in self.protocol.data_to_send():
            self.sock.sendall(data)

    def read(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.protocol.receive_data(data)
        self.events.extend(self.protocol.events_received())
        self.flush()  # pongs

    def send(self, text: str) -> None:
        self.protocol.send_text(text.encode())
        self.flush()

    def recv(self) -> str:
        """The next text frame."""
        while True:
            while not self.events:
                self.read()
            frame = self.events.popleft()
            if frame.opcode == Opcode.TEXT:
                return frame.data.decode()
            if frame.opcode == Opcode.PONG:
                self.pongs.append(frame.data)

    def written(self) -> tuple[list[str], dict]:
        """The frames of the `writer` probe, then its report."""
        self.send("writer")
        frames = [self.recv() for _ in range(5)]
        return frames, json.loads(self.recv())

    def probe(self, name: str) -> dict:
        self.send(name)
        return json.loads(self.recv())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def probe_client(log_dir):
    """A Client of tests/support/server_probe.py under a server named in SERVERS, started
    for it; both are stopped after the test."""
    processes, clients = [], []

    def connect(server: str, receive_buffer: int = 4096, deflate: bool = False) -> Client:
        port = free_port()
        args = [arg.format(port=port) for arg in SERVERS[server]]
        processes.append(Process(f"probe-{server}-{port}", args, log_dir, project_env()))
        processes[-1].wait_for_port(port)
        clients.append(Client(port, receive_buffer, deflate))
        clients[-1].port, clients[-1].process = port, processes[-1]
        return clients[-1]

    yield connect
    for client in clients:
        client.close()
    for process in processes:
        process.stop()


@pytest.mark.servers
def test_daphne_transport_counts_what_twisted_has_not_written_yet(probe_client):
    client = probe_client("daphne", receive_buffer=1 << 20)
    client.send("transport")
    assert client.recv() == "x" * server_probe.BIG_FRAME
    report = json.loads(client.recv())
    assert report["transport"] == "twisted.internet.tcp.Server"
    # daphne's send writes to Twisted's buffer at once: the consumer steps it once.
    assert report["finished_on_first_step"]
    assert report["before"] == 0
    assert report["held"] >= server_probe.BIG_FRAME  # written, not yet flushed
    assert client.probe("drained") == {"pending": 0}  # read by the client: none held


@pytest.mark.servers
def test_daphne_transport_says_when_its_client_has_gone(probe_client):
    # daphne drops sends to a closed connection silently: the consumer asks the transport.
    client = probe_client("daphne")
    assert client.probe("watch_close") == {"closed": False}
    client.close()
    other = Client(client.port)
    assert other.probe("close_seen") == {"seen": [True]}
    other.close()


@pytest.mark.servers
def test_no_daphne_transport_is_found_under_another_server(probe_client):
    assert probe_client("uvicorn").probe("transport") == {"transport": None}


@pytest.mark.servers
def test_a_uvicorn_send_that_waits_goes_on_in_order_once_the_client_reads(probe_client):
    client = probe_client("uvicorn")
    client.send("stall")
    # The server fills the socket's buffers and its send waits; reading lets it go on.
    frames = []
    while not (frame := client.recv()).startswith("{"):
        frames.append(int(frame[:6]))
    report = json.loads(frame)
    assert report["waited"], report
    assert frames == list(range(report["sent"]))  # the one that waited came last
    assert report["sent"] < server_probe.MAX_STALL_FRAMES


# Frame once, write many: frame_writer under each server it knows

WRITERS = {
    "daphne": "TwistedFrameWriter",
    "uvicorn": "SansIOFrameWriter",
    "uvicorn-websockets": "LegacyFrameWriter",
    "uvicorn-wsproto": "WsprotoFrameWriter",
    "gunicorn": "SansIOFrameWriter",
}


@pytest.mark.servers
@pytest.mark.parametrize("server", list(WRITERS))
def test_frames_written_once_reach_the_client_in_order_with_the_servers_own(probe_client, server):
    client = probe_client(server)
    frames, report = client.written()
    # Each frame is whole and valid to a strict client (websockets' parser), in the order
    # written, between frames the server framed itself.
    assert report["writer"] == WRITERS[server]
    assert report["wrote"] == [True, True] and report["wrote_idle"]
    assert frames == [f"frame {n}" for n in range(5)]
    assert client.written()[1]["wrote"] == [True, True]  # and again: the socket still fine
    # Nothing held: the kernel took the last frame at once, and under daphne Twisted never
    # registered for writability (two epoll_ctl calls saved per socket and broadcast).
    assert report["pending"] == 0
    assert report.get("registered_for_writing", False) is False


@pytest.mark.servers
@pytest.mark.parametrize("server", ["daphne", "uvicorn", "uvicorn-websockets", "uvicorn-wsproto"])
def test_what_the_kernel_does_not_take_is_counted_and_arrives_in_order(probe_client, server):
    client = probe_client(server)
    client.send("burst")
    # The server's pongs go out between the frames, never inside one. (Not under uvicorn's
    # legacy `websockets`: it fails a connection whose ping comes while a `send` waits for
    # the transport to drain, one waiter at a time, with or without prepared frames.)
    pings = 0 if server == "uvicorn-websockets" else 50
    for n in range(pings):
        client.protocol.send_ping(b"%d" % n)
    client.flush()
    report = None
    frames = []
    while report is None:
        frame = client.recv()
        if frame.startswith("{"):
            report = json.loads(frame)
        else:
            frames.append(int(frame[:6]))
    assert frames == list(range(server_probe.BURST_FRAMES))
    deadline = time.monotonic() + 30
    while len(client.pongs) < pings:  # websockets' strict parser read every frame whole
        assert time.monotonic() < deadline, f"{len(client.pongs)} pongs"
        while not client.events:
            client.read()
            assert not client.protocol.close_rcvd, client.process.log()[-2000:]
        frame = client.events.popleft()
        if frame.opcode == Opcode.PONG:
            client.pongs.append(frame.data)
    assert client.pongs == [b"%d" % n for n in range(pings)]
    if server == "uvicorn-websockets":
        # Paused by its transport, it refused, and `send` waited for the client instead.
        assert report["refused"] > 0
    else:
        # Far more than a client that does not read takes: the rest was held, and counted.
        assert report["refused"] == 0 and 0 < report["pending"] <= report["total"]


@pytest.mark.servers
@pytest.mark.parametrize("server", ["uvicorn", "uvicorn-websockets", "uvicorn-wsproto"])
def test_a_socket_that_negotiated_permessage_deflate_gets_frames_the_server_framed(
    probe_client, server
):
    client = probe_client(server, deflate=True)
    assert client.protocol.extensions, "the server accepts permessage-deflate"
    frames, report = client.written()
    assert report["wrote"] == [False, False]  # refused: the server compresses them itself
    assert not report["wrote_idle"]
    assert frames == [f"frame {n}" for n in range(5)]


@pytest.mark.servers
def test_daphne_declines_permessage_deflate_so_its_writer_always_applies(probe_client):
    client = probe_client("daphne", deflate=True)
    assert not client.protocol.extensions
    assert client.written()[1]["wrote"] == [True, True]


@pytest.mark.servers
@pytest.mark.parametrize("server", ["daphne", "uvicorn", "uvicorn-websockets", "uvicorn-wsproto"])
def test_a_closing_socket_is_skipped(probe_client, server):
    client = probe_client(server)
    client.send("closing")
    client.sock.settimeout(0.1)
    deadline = time.monotonic() + 10
    while "probe-closing" not in client.process.log() and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            client.read()  # answers the server's close (uvicorn's `websockets` waits for it)
        if client.protocol.close_rcvd is not None:
            client.sock.close()  # and for the connection to end
    line = next(x for x in client.process.log().splitlines() if x.startswith("probe-closing"))
    assert json.loads(line.split(" ", 1)[1]) == {"refused": True}


@pytest.mark.servers
def test_no_frame_writer_is_found_under_an_unknown_server(probe_client):
    pytest.importorskip("hypercorn", reason="hypercorn comes with the bench extra")
    client = probe_client("hypercorn")
    frames, report = client.written()
    assert report == {"writer": None, "wrote": [False, False]}
    assert frames == [f"frame {n}" for n in range(5)]


class Granian(Daphne):
    """The project under granian, whose `send` returns a future rather than a coroutine."""

    name = "granian"

    def command(self) -> list[str]:
        args = [PYTHON, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1"]
        return [*args, "--port", str(self.port), "channels_app.asgi:application"]


@pytest.mark.servers
def test_hints_reach_a_socket_under_granian_whose_send_is_no_coroutine(redis, start_daphne):
    pytest.importorskip("granian", reason="granian comes with the bench extra")
    granian = start_daphne(redis.url, server=Granian)
    with granian.connect() as ws:
        subscribe(ws, "granian")
        publish = "import pushgateway\nfor n in range(3): pushgateway.publish('granian', n)"
        assert run_python(publish, redis.url).returncode == 0
        assert [recv_json(ws)["data"] for _ in range(3)] == [0, 1, 2]
        ws.send('{"type": "ping"}')  # an answer takes the same way
        assert recv_json(ws) == {"type": "pong"}
    assert "send to one socket failed" not in granian.process.log()


async def test_a_send_that_finishes_at_once_needs_no_task():
    written = []

    async def send(message):
        written.append(message)

    assert adapters.start_send_coroutine(send("hint")) is None
    assert written == ["hint"]


async def test_a_send_that_waits_is_resumed_by_whoever_awaits_it():
    ready = asyncio.Event()
    written = []

    async def send(message):
        await ready.wait()
        written.append(message)
        return "done"

    waiting = adapters.start_send_coroutine(send("hint"))
    assert waiting is not None and written == []
    task = asyncio.ensure_future(waiting)
    await asyncio.sleep(0.01)
    assert not task.done()
    ready.set()
    assert await task == "done" and written == ["hint"]


async def test_an_awaitable_that_is_no_coroutine_is_handed_back_to_wait_on():
    future = asyncio.get_running_loop().create_future()  # what granian's send is like
    assert adapters.start_send_coroutine(future) is future


# The drain (channels_app.drain): the server's own SIGTERM handler and listening sockets

SHUTDOWN_HANDLERS = {
    "daphne": ("ReactorBase.sigTerm", "twisted.internet.asyncioreactor.AsyncioSelectorReactor"),
    "uvicorn": ("Server.handle_exit", "uvicorn.server.Server"),
    "gunicorn": ("Server.handle_exit", "uvicorn.server.Server"),
}


@pytest.mark.servers
@pytest.mark.parametrize("server", list(SHUTDOWN_HANDLERS))
def test_the_servers_own_sigterm_handler_is_found_and_its_listeners_stop(probe_client, server):
    client = probe_client(server)
    handler, owner = SHUTDOWN_HANDLERS[server]
    assert client.probe("shutdown_handler") == {"handler": handler, "owner": owner}
    assert client.probe("stop_listening") == {"stopped": 1}
    if server != "gunicorn":  # there the master and the other workers keep the socket
        deadline = time.monotonic() + 2  # Twisted closes the port on its next turn
        while listening(client.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not listening(client.port)
    assert client.probe("shutdown_handler")["handler"] == handler  # the socket still works


@pytest.mark.servers
@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
def test_calling_the_servers_handler_from_the_loop_shuts_it_down(probe_client, server):
    client = probe_client(server)
    assert client.probe("shut_down") == {"called": True}
    assert client.process.proc.wait(10) is not None
