"""A minimal asyncio WebSocket client for load generation.

Thousands of these fit in one process and each received frame costs a few microseconds, so
the clients are not what a benchmark measures. It speaks just enough RFC 6455: the
handshake, masked text frames out, unmasked frames in (no extensions, no fragmentation).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from collections.abc import Callable


def split_frames(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The complete (opcode, payload) server frames at the start of `buf`, and the rest."""
    frames = []
    while len(buf) >= 2:
        length = buf[1] & 0x7F
        offset = 2
        if length == 126:
            if len(buf) < 4:
                break
            (length,) = struct.unpack_from("!H", buf, 2)
            offset = 4
        elif length == 127:
            if len(buf) < 10:
                break
            (length,) = struct.unpack_from("!Q", buf, 2)
            offset = 10
        if len(buf) < offset + length:
            break
        frames.append((buf[0] & 0x0F, buf[offset : offset + length]))
        buf = buf[offset + length :]
    return frames, buf


class ClientProtocol(asyncio.Protocol):
    def __init__(self, host: str, path: str, on_text: Callable[[bytes], None]) -> None:
        self.host = host
        self.path = path
        self.on_text = on_text
        self.handshake = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nOrigin: http://{self.host}\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[:end]).split(b"\r\n", 1)[0]
            del self.buffer[: end + 4]
            if b" 101 " not in status:
                self.handshake.set_exception(ConnectionError(status.decode()))
                return
            self.upgraded = True
            self.handshake.set_result(None)
        self._parse_frames()

    def _parse_frames(self) -> None:
        frames, rest = split_frames(bytes(self.buffer))
        self.buffer = bytearray(rest)
        for opcode, payload in frames:
            if opcode == 1:
                self.on_text(payload)
            elif opcode == 8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                self.transport.close()
            elif opcode == 9:  # ping: answer pong
                self.send_frame(payload, opcode=0xA)

    def send_frame(self, payload: bytes, opcode: int = 1) -> None:
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(header + mask + masked)

    def send_json(self, frame: dict) -> None:
        self.send_frame(json.dumps(frame).encode())

    def connection_lost(self, exc) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(exc or ConnectionError("closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(self.close_code)


async def connect(
    host: str, port: int, path: str, on_text: Callable[[bytes], None]
) -> ClientProtocol:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        lambda: ClientProtocol(f"{host}:{port}", path, on_text), host, port
    )
    await protocol.handshake
    return protocol
