"""Frame once, write many: a hint's WebSocket frame built once for every local socket.

Server frames are never masked (RFC 6455, 5.1), so the bytes of one text frame serve every
socket that did not negotiate an extension. The hub hands each socket a PreparedSend: an
ordinary ASGI ``websocket.send`` message (any server can take it) that also carries those
bytes, built on first use; or, for several frames at once, a PreparedBatch of them whose
bytes go out in one write. The consumer writes them through pushgateway.adapters'
FrameWriter where the server is known, and sends the message through ASGI otherwise.
"""

from __future__ import annotations

OPCODE_TEXT = 0x1
FIN = 0x80


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented text frame carrying `payload` (UTF-8)."""
    length = len(payload)
    if length < 126:
        header = bytes((FIN | OPCODE_TEXT, length))
    elif length < 1 << 16:
        header = bytes((FIN | OPCODE_TEXT, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((FIN | OPCODE_TEXT, 127)) + length.to_bytes(8, "big")
    return header + payload


class PreparedSend(dict):
    """``{"type": "websocket.send", "text": text}``, and ``wire``: its frame's bytes, built
    once however many sockets ask (None when the text cannot be encoded: a lone surrogate,
    which the server's own `send` then refuses as it would any other time)."""

    __slots__ = ("_wire",)

    def __init__(self, text: str) -> None:
        super().__init__(type="websocket.send", text=text)
        self._wire: bytes | None | bool = False

    @property
    def wire(self) -> bytes | None:
        if self._wire is False:
            try:
                self._wire = text_frame(self["text"].encode())
            except UnicodeEncodeError:
                self._wire = None
        return self._wire


class PreparedBatch:
    """Several PreparedSends for the same sockets, in order (iterate it), and ``wire``:
    their frames' bytes together, built once (None when one of them has none)."""

    __slots__ = ("_wire", "messages")

    def __init__(self, texts: list[str]) -> None:
        self.messages = [PreparedSend(text) for text in texts]
        self._wire: bytes | None | bool = False

    def __iter__(self):
        return iter(self.messages)

    @property
    def wire(self) -> bytes | None:
        if self._wire is False:
            wires = [message.wire for message in self.messages]
            self._wire = None if None in wires else b"".join(wires)
        return self._wire


def prepared_send(text: str) -> PreparedSend:
    """The message the hub hands every socket on a channel for one frame."""
    return PreparedSend(text)


def prepared_batch(texts: list[str]) -> PreparedBatch:
    """What the hub hands every socket on a channel for several frames at once."""
    return PreparedBatch(texts)
