"""Benchmarks that print comparison tables (python -m bench.fanout, bench.capacity, ...)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def environment(log_dir: Path, redis_url: str) -> dict:
    """The environment of every process a benchmark starts: this project on that Redis."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "settings.dev",
        "REDIS_URL": redis_url,
        "SQLITE_PATH": str(log_dir / "db.sqlite3"),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("PUSHGATEWAY_BACKEND", None)
    return env


def child_process(module: str, *args: str, env: dict) -> subprocess.Popen:
    """`python -m module args...` of this project, spoken to through stdin and stdout."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
