"""Frame once, write many, without a server: the frame bytes the hub builds once
(channels_app.frames) and the consumer's choice between writing them and ASGI `send`.
tests/integration/test_server_adapters.py checks the writers under the real servers."""

import asyncio

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from channels_app.consumer import PushGatewayConsumer
from channels_app.frames import PreparedSend, prepared_batch, prepared_send, text_frame
from pushgateway.constants import MAX_PENDING_BYTES


@pytest.fixture(autouse=True)
def frames_on(monkeypatch):
    # The test process runs with PUSHGATEWAY_TUNING=off (tests/conftest.py): the knob is
    # turned on here, as a server's default has it.
    from channels_app import tuning

    monkeypatch.setattr(tuning, "frames", True)


def parse(data: bytes) -> Frame:
    """The one frame in `data`, as websockets' strict parser reads a server's frame."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        assert reader.at_eof()  # nothing left over
        return done.value
    raise AssertionError("incomplete frame")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65_535, 65_536, 200_000])
def test_a_text_frame_of_every_length_form_parses_whole(size):
    payload = ("é" * (size // 2) + "x" * (size % 2)).encode()
    frame = parse(text_frame(payload))
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT, True, payload)
    assert not (frame.rsv1 or frame.rsv2 or frame.rsv3)


def test_a_prepared_send_is_an_asgi_message_whose_frame_is_built_once():
    message = prepared_send('{"type":"pong"}')
    assert message == {"type": "websocket.send", "text": '{"type":"pong"}'}
    assert message.wire is message.wire  # one bytes object for every socket
    assert parse(message.wire).data == b'{"type":"pong"}'


def test_text_no_frame_can_carry_is_left_to_the_servers_send():
    assert PreparedSend("\ud800").wire is None
    assert prepared_batch(["fine", "\ud800"]).wire is None


def test_a_batch_is_its_frames_bytes_one_after_the_other_built_once():
    batch = prepared_batch(["one", "two"])
    assert list(batch) == [prepared_send("one"), prepared_send("two")]
    assert batch.wire == text_frame(b"one") + text_frame(b"two")
    assert batch.wire is batch.wire


class Writer:
    """What the consumer sees of a known server's transport."""

    transport = None

    def __init__(self, accepts=True):
        self.accepts = accepts
        self.frames = []
        self.held = 0

    def pending(self):
        return self.held

    def write(self, frame):
        if self.accepts:
            self.frames.append(frame)
        return self.accepts


class Hub:
    metrics = None


def consumer(send, writer) -> PushGatewayConsumer:
    socket = PushGatewayConsumer()
    socket.send, socket.writer, socket.hub = send, writer, Hub()
    socket.closing, socket.backlog, socket.session = False, None, None
    return socket


def stalled_send():
    """uvicorn's `send` while the client does not read: it waits until `ready` is set; and
    the texts it sent, in order."""
    ready, sent = asyncio.Event(), []

    async def send(message):
        await ready.wait()
        sent.append(message["text"])

    return send, sent, ready


async def test_frames_go_to_the_transport_and_replies_through_send():
    sent = []

    async def send(message):
        sent.append(message["text"])

    writer = Writer()
    socket = consumer(send, writer)
    socket.push(prepared_send("hint"))
    socket.push({"type": "websocket.send", "text": "reply"})  # the consumer's own frames
    assert writer.frames == [text_frame(b"hint")] and sent == ["reply"]


async def test_a_frame_never_overtakes_frames_queued_behind_a_send_that_waits():
    send, sent, ready = stalled_send()
    writer = Writer()
    socket = consumer(send, writer)
    socket.push(prepared_send("first"))  # written at once
    writer.accepts = False  # say, the server must frame one itself
    socket.push(prepared_send("second"))  # through `send`, which waits
    writer.accepts = True
    socket.push(prepared_send("third"))  # must queue behind it, not go to the transport
    assert writer.frames == [text_frame(b"first")]
    ready.set()
    while socket.backlog is not None:
        await asyncio.sleep(0)
    assert sent == ["second", "third"]
    socket.push(prepared_send("fourth"))  # the queue is empty again: the transport
    assert writer.frames == [text_frame(b"first"), text_frame(b"fourth")]


async def test_a_batch_is_one_write_to_the_transport_or_its_frames_in_order_through_send():
    send, sent, ready = stalled_send()
    writer = Writer()
    socket = consumer(send, writer)
    socket.push_many(prepared_batch(["a", "b"]))
    assert writer.frames == [text_frame(b"a") + text_frame(b"b")]
    writer.accepts = False  # the server must frame them itself
    socket.push_many(prepared_batch(["c", "d"]))  # c through `send`, which waits; d behind
    writer.accepts = True
    socket.push_many(prepared_batch(["e", "f"]))  # behind them too, not to the transport
    assert len(writer.frames) == 1
    ready.set()
    while socket.backlog is not None:
        await asyncio.sleep(0)
    assert sent == ["c", "d", "e", "f"]


async def test_bytes_the_transport_holds_count_toward_the_slow_reader_cap():
    closes = []

    async def send(message):
        closes.append(message)

    writer = Writer()
    socket = consumer(send, writer)
    writer.held = MAX_PENDING_BYTES + 1
    socket.push(prepared_send("one too many"))
    await asyncio.sleep(0)
    assert writer.frames == [] and closes == [{"type": "websocket.close", "code": 4013}]
    socket.push(prepared_send("after"))  # a closing socket is skipped
    socket.push_many(prepared_batch(["and", "more"]))
    assert writer.frames == []


async def test_without_the_frames_knob_every_hint_goes_through_send(monkeypatch):
    from channels_app import tuning

    monkeypatch.setattr(tuning, "frames", False)
    sent = []

    async def send(message):
        sent.append(message["text"])

    writer = Writer()
    consumer(send, writer).push(prepared_send("hint"))
    assert sent == ["hint"] and writer.frames == []
