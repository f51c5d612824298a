"""An ASGI application that reports what pushgateway.adapters find under a real server.

tests/integration/test_server_adapters.py serves it with daphne and with uvicorn. A
WebSocket client sends the name of a probe as a text frame; the application runs the probe
with the server's own `send` and answers with a JSON report.
"""

import asyncio
import json
import signal

from channels_app.frames import prepared_send
from pushgateway.adapters import (
    daphne_transport,
    frame_writer,
    pending_bytes,
    server_shutdown_handler,
    start_send_coroutine,
    stop_listening,
    transport_closed,
)

BIG_FRAME = 200_000  # bytes: more than one write to the kernel takes
STALL_FRAME = 65_536  # bytes per frame while the client does not read
MAX_STALL_FRAMES = 2_000  # 128 MiB: far more than a stalled client's buffers hold


def text(content: str) -> dict:
    return {"type": "websocket.send", "text": content}


async def transport(send) -> dict:
    """What daphne_transport finds, and what pending_bytes counts around one big write."""
    found = daphne_transport(send)
    if found is None:
        return {"transport": None}
    before = pending_bytes(found)
    waiting = start_send_coroutine(send(text("x" * BIG_FRAME)))
    return {
        "transport": type(found).__module__ + "." + type(found).__qualname__,
        "before": before,
        "held": pending_bytes(found),
        "finished_on_first_step": waiting is None,
    }


async def drained(send) -> dict:
    """pending_bytes once the client has read everything (it waits for the write)."""
    found = daphne_transport(send)
    for _ in range(250):
        if pending_bytes(found) == 0:
            break
        await asyncio.sleep(0.02)
    return {"pending": pending_bytes(found)}


async def stall(send) -> dict:
    """Numbered frames through start_send_coroutine until the server makes one wait (the
    client is not reading), then that one awaited to its end."""
    for n in range(MAX_STALL_FRAMES):
        waiting = start_send_coroutine(send(text(f"{n:06d}" + "x" * STALL_FRAME)))
        if waiting is not None:
            await waiting
            return {"sent": n + 1, "waited": True}
    return {"sent": MAX_STALL_FRAMES, "waited": False}


async def shutdown_handler(send) -> dict:
    """The server's own SIGTERM handler that server_shutdown_handler finds, by name."""
    handler = server_shutdown_handler()
    owner = getattr(handler, "__self__", None)
    return {
        "handler": getattr(handler, "__qualname__", repr(handler)),
        "owner": type(owner).__module__ + "." + type(owner).__qualname__,
    }


async def stop(send) -> dict:
    """stop_listening with that handler: how many listening sockets it closed."""
    return {"stopped": stop_listening(server_shutdown_handler())}


async def shut_down(send) -> dict:
    """The server's own handler, called from the event loop as the drain calls it."""
    asyncio.get_running_loop().call_later(0.1, server_shutdown_handler(), signal.SIGTERM, None)
    return {"called": True}


BURST_FRAMES = 300  # of STALL_FRAME bytes (20 MB): more than the kernel takes for a client


async def writer(send) -> dict:
    """frame_writer's writer: ASGI sends and frames written by it, alternately (a frame the
    writer refuses goes through ASGI `send`); then, once all is written, one more frame by
    the writer and whether that left Twisted registered for writability (daphne)."""
    found = frame_writer(send)
    wrote = []
    for n in range(4):
        message = prepared_send(f"frame {n}")
        if n % 2 == 0:
            await send(message)
        else:
            wrote.append(found is not None and found.write(message.wire))
            if not wrote[-1]:
                await send(message)
    report = {"writer": type(found).__name__ if found else None, "wrote": wrote}
    if found is None:
        await send(prepared_send("frame 4"))
        return report
    for _ in range(250):
        if found.pending() == 0:
            break
        await asyncio.sleep(0.02)
    report["wrote_idle"] = found.write(prepared_send("frame 4").wire)
    if not report["wrote_idle"]:
        await send(prepared_send("frame 4"))
    report["pending"] = found.pending()
    reactor = getattr(found.transport, "reactor", None)
    if reactor is not None:
        report["registered_for_writing"] = found.transport in reactor.getWriters()
    return report


async def burst(send) -> dict:
    """BURST_FRAMES numbered frames through the writer while the client does not read: what
    the kernel does not take is held, in order, and counted by pending(); a frame the writer
    refuses (uvicorn's `websockets` while its transport is paused) goes through `send`."""
    found = frame_writer(send)
    refused = 0
    for n in range(BURST_FRAMES):
        message = prepared_send(f"{n:06d}" + "x" * STALL_FRAME)
        if not found.write(message.wire):  # as the consumer does: through `send`, in order
            refused += 1
            await send(message)
    total = BURST_FRAMES * (STALL_FRAME + 6 + 4)
    return {"pending": found.pending(), "total": total, "refused": refused}


async def closing(send) -> dict:
    """Close the socket through ASGI, then ask the writer to write: it must refuse. The
    answer goes to the server's standard output (the socket is closing)."""
    found = frame_writer(send)
    await send({"type": "websocket.close", "code": 4000})
    refused = not found.write(prepared_send("after close").wire)
    print("probe-closing " + json.dumps({"refused": refused}), flush=True)
    return None


_closes_seen: list[bool] = []


async def watch_close(send) -> dict:
    """transport_closed of this connection now, and (in the background, for 5 s) whether it
    turns true once the client has gone: `close_seen` asks from another connection."""
    found = daphne_transport(send)

    async def watch() -> None:
        for _ in range(250):
            if transport_closed(found):
                break
            await asyncio.sleep(0.02)
        _closes_seen.append(transport_closed(found))

    asyncio.ensure_future(watch())
    return {"closed": transport_closed(found)}


async def close_seen(send) -> dict:
    for _ in range(300):
        if _closes_seen:
            break
        await asyncio.sleep(0.02)
    return {"seen": _closes_seen}


PROBES = {
    "writer": writer,
    "burst": burst,
    "closing": closing,
    "watch_close": watch_close,
    "close_seen": close_seen,
    "transport": transport,
    "drained": drained,
    "stall": stall,
    "shutdown_handler": shutdown_handler,
    "stop_listening": stop,
    "shut_down": shut_down,
}


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        while (event := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while (event := await receive())["type"] == "websocket.receive":
        report = await PROBES[event["text"]](send)
        if report is not None:
            await send(text(json.dumps(report)))
