"""Run a module as `python -m` would, answering SIGUSR1 with what Python holds live.

    python -m tests.support.heap FILE MODULE [ARGS...]

On SIGUSR1 the process collects garbage (frozen objects too) and writes to FILE how many
memory blocks Python's allocator has handed out and not had back (sys.getallocatedblocks()).
Unlike the resident set size, that count does not include memory the allocators keep after
the objects in it are freed, so a soak can tell a leak from a high-water mark.
"""

from __future__ import annotations

import gc
import os
import runpy
import signal
import sys


def main() -> None:
    path = sys.argv[1]

    def report(signum, frame) -> None:
        frozen = gc.get_freeze_count()  # channels_app.tuning freezes long-lived objects
        gc.unfreeze()
        gc.collect()
        if frozen:
            gc.freeze()
        with open(f"{path}.tmp", "w") as out:
            out.write(str(sys.getallocatedblocks()))
        os.replace(f"{path}.tmp", path)

    signal.signal(signal.SIGUSR1, report)
    sys.argv = sys.argv[2:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
