"""`./dev pushpin-demo`: the demo behind a local Pushpin, which stops with it however it ends.

Runs daphne (the Fanout backend publishing to Pushpin) and Pushpin in front of it, on PORT,
PUSHPIN_PORT and PUSHPIN_PUBLISH_PORT (8000, 7999, 5561 unless set). When either exits, or the
demo gets Ctrl-C (SIGINT to its process group) or SIGTERM, both are told to stop; what still
runs 10 s later (PUSHPIN_DEMO_GRACE seconds) is killed, Pushpin's services before its runner
(killed first, the runner could leave them behind), so no process and no listening port
outlives the demo.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from demo import pushpin

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".state"
GRACE = float(os.environ.get("PUSHPIN_DEMO_GRACE", 10))  # seconds between TERM and KILL


def sig_key() -> str:
    """The key Pushpin signs its requests to the origin with, kept between runs."""
    path = STATE / "sig-key"
    STATE.mkdir(exist_ok=True)
    if not path.exists() or not path.read_text().strip():
        path.write_text(secrets.token_hex(24) + "\n")
    return path.read_text().strip()


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Pushpin's services, for its runner)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return found


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
        os.kill(pid, signal.SIGKILL)


class Demo:
    """daphne and Pushpin's runner, started in this process group (Ctrl-C reaches them too)."""

    def __init__(self, port: int, pushpin_port: int, publish_port: int):
        key = sig_key()
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "settings.dev",
            "PUSHGATEWAY_BACKEND": "fanout",
            "GRIP_URL": pushpin.grip_url(publish_port, key),
        }
        self.manage("migrate", "--noinput", "-v0")
        self.manage("demo_data")
        config = pushpin.write_config(
            STATE / f"pushpin-{pushpin_port}", pushpin_port, publish_port, key
        )
        log = STATE / f"pushpin-{pushpin_port}.log"
        with open(log, "ab") as output:
            self.pushpin = subprocess.Popen(
                pushpin.command(config, port), cwd=ROOT, stdout=output, stderr=subprocess.STDOUT
            )
        daphne = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
        self.daphne = subprocess.Popen(
            [*daphne, "channels_app.asgi:application"], cwd=ROOT, env=self.env
        )
        print(
            f"==> demo behind Pushpin on http://127.0.0.1:{pushpin_port}/ (daphne on :{port}, "
            f"Pushpin's log in {log.relative_to(ROOT)})",
            file=sys.stderr,
            flush=True,
        )

    def manage(self, *args: str) -> None:
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, check=True)

    def running(self) -> bool:
        return self.pushpin.poll() is None or self.daphne.poll() is None

    def stop(self) -> None:
        """TERM to both; KILL to what still runs after GRACE seconds, Pushpin's services
        first. Returns once both have exited, their ports free."""
        for process in (self.daphne, self.pushpin):
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + GRACE
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.running():
            print(
                f"pushpin-demo: still running {GRACE:g} s after TERM; killing it", file=sys.stderr
            )
            for service in children_of(self.pushpin.pid):
                kill(service)
            for process in (self.pushpin, self.daphne):
                kill(process.pid)
        self.pushpin.wait()
        self.daphne.wait()


def port(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def main() -> int:
    """Run the demo until daphne or Pushpin exits or a signal comes; the exit status says
    which signal (128 + its number), or 1 when a server exited by itself."""
    signalled: list[int] = []

    def note(signum, frame) -> None:
        signalled.append(signum)

    # Noted, not raised: the demo stops the same way whichever signal or exit ends it.
    signal.signal(signal.SIGINT, note)
    signal.signal(signal.SIGTERM, note)
    demo = Demo(port("PORT", 8000), port("PUSHPIN_PORT", 7999), port("PUSHPIN_PUBLISH_PORT", 5561))
    try:
        while not signalled and demo.pushpin.poll() is None and demo.daphne.poll() is None:
            time.sleep(0.1)
    finally:
        demo.stop()
    return 128 + signalled[0] if signalled else 1


if __name__ == "__main__":
    sys.exit(main())
