"""The application bench/capacity.py serves: channels_app.asgi's, with a GC pause probe.

The probe is a `gc.callbacks` hook that times every collection and writes, to
``$BENCH_GC_DIR/gc-<pid>.json`` whenever a full collection ends or a pause of 10 ms or more
ends, the count and total time of full collections and every such pause with its time and
the CPU time the collection itself took (on a busy machine a pause also holds the time the
process waited for a core), so a benchmark can tell the pauses of a phase from those of
start-up. Without BENCH_GC_DIR this
module is exactly ``channels_app.asgi``: the same application object is served.
"""

from __future__ import annotations

import gc
import json
import os
import time
from pathlib import Path


def install_gc_probe(directory: Path) -> None:
    path = directory / f"gc-{os.getpid()}.json"
    stats: dict = {"full": 0, "full_ms": 0.0, "all_ms": 0.0, "pauses": []}
    started = started_cpu = 0.0

    def write() -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stats))
        tmp.replace(path)

    def probe(phase: str, info: dict) -> None:
        nonlocal started, started_cpu
        if phase == "start":
            started, started_cpu = time.perf_counter(), time.thread_time()
            return
        ms = (time.perf_counter() - started) * 1000
        stats["all_ms"] += ms
        long = ms >= 10 and len(stats["pauses"]) < 10_000
        if long:
            cpu_ms = round((time.thread_time() - started_cpu) * 1000, 1)
            stats["pauses"].append((time.time(), round(ms, 1), info["generation"], cpu_ms))
        if info["generation"] == 2:
            stats["full"] += 1
            stats["full_ms"] += ms
        if long or info["generation"] == 2:
            write()

    gc.callbacks.append(probe)
    write()


if os.environ.get("BENCH_GC_DIR"):
    install_gc_probe(Path(os.environ["BENCH_GC_DIR"]))

from channels_app.asgi import application  # noqa: E402


async def coroutine_application(scope, receive, send):
    """The same application as an ``async def``, for hypercorn on Python 3.11.

    hypercorn tells ASGI from WSGI with ``inspect.iscoroutinefunction``, which honours
    asgiref's coroutine marker only from Python 3.12 on. This wrapper costs one more
    coroutine frame per socket.
    """
    return await application(scope, receive, send)


__all__ = ["application", "coroutine_application"]
