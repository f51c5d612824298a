"""py-spy profiles of a benchmark phase, and summaries of where the CPU went.

    with profiled(pid, Path("connect.txt")):   # py-spy record, collapsed stacks
        ...                                     # the phase
    .venv/bin/python -m bench.pyspy connect.txt [--top 25]

The summary lists the frames that take the most samples, by self time (the frame itself
was on CPU) and by total time (the frame or anything it called), as a share of all
samples. py-spy samples without pausing the process (--nonblocking) and skips idle
samples, so the shares are of CPU time, not of wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def profiled(pid: int, output: Path, rate: int = 250) -> Iterator[None]:
    """Record `pid` with py-spy while the block runs (no-op when py-spy is missing)."""
    py_spy = shutil.which("py-spy") or str(Path(__import__("sys").executable).parent / "py-spy")
    args = [py_spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"]
    args += ["--nonblocking", "--output", str(output)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes the profile when interrupted
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def frame_name(frame: str) -> str:
    """'handle (daphne/server.py:210)' -> 'handle (daphne/server.py)': lines vary per call."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def summarize(path: Path, top: int = 25) -> str:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [frame_name(f) for f in stack.split(";")[1:]]  # first is the thread
        if not frames:
            continue
        samples += n
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    packages: Counter[str] = Counter()
    for frame, n in own.items():
        packages[package(frame)] += n
    out = [f"{path.name}: {samples} samples"]
    out.append(
        "  self % by package: "
        + ", ".join(f"{name} {100 * n / samples:.0f}" for name, n in packages.most_common(10))
    )
    out.append(f"  self %   total %   frame (top {top} by self time)")
    for frame, n in own.most_common(top):
        out.append(f"  {100 * n / samples:6.1f}   {100 * total[frame] / samples:7.1f}   {frame}")
    out.append(f"  total %   frame (top {top} by total time)")
    for frame, n in total.most_common(top):
        out.append(f"  {100 * n / samples:7.1f}   {frame}")
    return "\n".join(out)


def package(frame: str) -> str:
    """The top-level package of a frame name made by frame_name()."""
    path = frame.rpartition(" (")[2].rstrip(")")
    head = path.split("/", 1)[0]
    return head.removesuffix(".py") if "/" in path or path.endswith(".py") else path


def main() -> None:
    parser = argparse.ArgumentParser(description="Summarise py-spy raw profiles.")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for path in args.files:
        print(summarize(path, args.top), end="\n\n")


if __name__ == "__main__":
    main()
