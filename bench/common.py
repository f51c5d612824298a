"""What every benchmark sets up: a Redis of its own, the project's environment, child
processes that talk JSON lines, and the header that says where and how to reproduce."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.servers import ONE_HOST_OF_PAGES, RedisServer, options_env  # noqa: E402


def environment(log_dir: Path, redis_url: str) -> dict:
    """The environment of every process a benchmark starts: this project on that Redis."""
    env = {
        **os.environ,
        # settings.dev; every page comes from this host, so no per-address join budget.
        **options_env(ONE_HOST_OF_PAGES),
        "REDIS_URL": redis_url,
        "SQLITE_PATH": str(log_dir / "db.sqlite3"),
        "PYTHONPATH": str(ROOT),
    }
    for chosen in ("PUSHGATEWAY_BACKEND", "DATABASE_URL", "REDIS_LAYER"):
        env.pop(chosen, None)
    return env


@contextlib.contextmanager
def bench_environment(module: str) -> Iterator[tuple[Path, RedisServer, dict]]:
    """A log directory, a Redis of its own and the environment of the project's processes
    (settings.dev on that Redis, without a per-address join budget: every page comes from
    this host); prints the header with the reproduce line."""
    log_dir = Path(tempfile.mkdtemp(prefix="pushgateway-bench-"))
    redis = RedisServer(log_dir)
    env = environment(log_dir, redis.url)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores; logs in {log_dir}")
    print(f"# reproduce: python -m {module} {shlex.join(sys.argv[1:])}".rstrip())
    try:
        yield log_dir, redis, env
    finally:
        redis.stop()


def child(module: str, *args: str, env: dict) -> subprocess.Popen:
    """A worker process of a benchmark: `python -m MODULE ARGS`, JSON lines on stdout."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def read_json(proc: subprocess.Popen) -> dict:
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"benchmark child {proc.args} exited with {proc.wait(30)}")
    return json.loads(line)


def report(data: dict) -> None:
    """From a worker: one JSON line to the benchmark."""
    print(json.dumps(data), flush=True)
