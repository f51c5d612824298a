"""`./dev pushpin-demo` stops its Pushpin however it ends: daphne exiting, Ctrl-C, TERM."""

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.servers import ROOT, free_port, listening, project_env

# Seconds between TERM and KILL (the demo's PUSHPIN_DEMO_GRACE; 10 s unless set).
GRACE = 3

pytestmark = pytest.mark.servers  # on the primary combination only: it runs .venv's daphne


def processes_below(pid: int) -> dict[int, str]:
    """The live processes descending from `pid`, with their command lines."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = {}, list(children.get(pid, []))
    while todo:
        child = todo.pop()
        command = command_line(child)
        if command is not None:
            found[child] = command
        todo += children.get(child, [])
    return found


def command_line(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return None


def alive(pid: int, command: str) -> bool:
    """Whether `pid` still runs `command` (not a zombie, not a reused id)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and command_line(pid) == command


class Demo:
    def __init__(self, tmp_path: Path):
        self.port, self.pushpin_port, self.publish_port = free_port(), free_port(), free_port()
        self.state = [ROOT / ".state" / f"pushpin-{self.pushpin_port}{end}" for end in ("", ".log")]
        env = project_env(
            SQLITE_PATH=str(tmp_path / "demo.sqlite3"),
            PORT=str(self.port),
            PUSHPIN_PORT=str(self.pushpin_port),
            PUSHPIN_PUBLISH_PORT=str(self.publish_port),
            PUSHPIN_DEMO_GRACE=str(GRACE),
        )
        self.output = tmp_path / "dev.log"
        self.processes: dict[int, str] = {}  # what the script started, once it serves
        with open(self.output, "wb") as output:
            # A session of its own: Ctrl-C in a terminal signals the whole process group. And
            # SIGINT at its default, as in a terminal, even where the suite runs with it ignored
            # (started in the background of a shell): bash cannot trap a signal it was
            # started ignoring.
            self.script = subprocess.Popen(
                [str(ROOT / "dev"), "pushpin-demo"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )
        self.wait_until_served()
        self.processes = processes_below(self.script.pid)

    def log(self) -> str:
        """The script's output, Pushpin's log and what still runs (for failure messages)."""
        pushpin_log = self.state[1].read_text(errors="replace") if self.state[1].exists() else ""
        running = {p: c for p, c in self.processes.items() if alive(p, c)}
        return (
            f"{self.output.read_text(errors='replace')}\n--- Pushpin's log:\n{pushpin_log[-4000:]}"
            f"\n--- still running: {running}"
        )

    def wait_until_served(self, timeout: float = 60) -> None:
        """Until a page comes from daphne through Pushpin."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.script.poll() is None, self.log()
            try:
                url = f"http://127.0.0.1:{self.pushpin_port}/"
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"the demo was not served through Pushpin:\n{self.log()}")

    def pids(self, program: str) -> list[int]:
        return [pid for pid, command in self.processes.items() if program in command]

    def left_running(self, timeout: float = 15) -> dict[int, str]:
        """What the script started that still runs `timeout` seconds from now at most."""
        deadline = time.monotonic() + timeout
        while True:
            running = {p: c for p, c in self.processes.items() if alive(p, c)}
            if not running or time.monotonic() > deadline:
                return running
            time.sleep(0.1)

    def clean_up(self) -> None:
        if self.script.poll() is None:
            os.killpg(self.script.pid, signal.SIGKILL)
            self.script.wait()
        for pid, command in self.processes.items():
            if alive(pid, command):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.state[0], ignore_errors=True)
        self.state[1].unlink(missing_ok=True)


@pytest.fixture
def demo(tmp_path):
    demo = Demo(tmp_path)
    yield demo
    demo.clean_up()


def daphne_dies(demo):
    [daphne] = demo.pids("daphne")
    os.kill(daphne, signal.SIGKILL)


def ctrl_c(demo):
    os.killpg(demo.script.pid, signal.SIGINT)


def term_to_the_script(demo):
    os.kill(demo.script.pid, signal.SIGTERM)


@pytest.mark.parametrize("end", [daphne_dies, ctrl_c, term_to_the_script])
def test_pushpin_is_stopped_however_the_demo_ends(demo, end):
    pushpin = demo.pids("pushpin")
    assert len(pushpin) >= 2, demo.processes  # the runner and the services it started
    assert demo.pids("daphne"), demo.processes

    end(demo)

    try:
        demo.script.wait(20)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"./dev pushpin-demo did not exit:\n{demo.log()}") from None
    assert demo.left_running() == {}, demo.log()
    assert not listening(demo.pushpin_port) and not listening(demo.publish_port)
    assert not listening(demo.port)


def test_a_pushpin_that_does_not_stop_is_killed_with_its_services(demo):
    """Ctrl-C ends the demo even when Pushpin hangs: GRACE s after TERM the script kills
    Pushpin's runner and its services, and every port is free."""
    [runner] = [pid for pid, command in demo.processes.items() if " --config " in command]
    os.kill(runner, signal.SIGSTOP)  # a runner that cannot act on TERM

    ctrl_c(demo)

    try:
        demo.script.wait(20)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"./dev pushpin-demo did not exit:\n{demo.log()}") from None
    assert f"still running {GRACE} s after TERM; killing it" in demo.log()
    assert demo.left_running() == {}, demo.log()
    assert not listening(demo.pushpin_port) and not listening(demo.publish_port)
