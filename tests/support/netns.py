"""Hosts of a test's own: Linux network namespaces joined by one bridge.

Each `Host` is a network namespace with one address on a bridge that lives in a namespace of
its own, so processes started on different hosts reach each other only by address, as on
separate machines, and no traffic leaves the namespaces this module made. Needs root and
iproute2 (`./dev setup` installs it); without them `Network` raises `NamespacesUnavailable`
saying why, and the tests using it fail rather than skip.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.support.servers import PYTHON, Process, project_env, require

# Addresses exist only inside the namespaces, so they cannot collide with the machine's.
SUBNET = "10.213.8"
# Each host has ports of its own: the services listen on their usual ones.
REDIS_PORT = 6379
HTTP_PORT = 8000

# Run on a host: wait until ADDRESS:PORT accepts a connection (exit 0), or TIMEOUT passes.
WAIT_FOR_PORT = """
import socket, sys, time
address, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + timeout
while True:
    try:
        socket.create_connection((address, port), timeout=0.5).close()
        sys.exit(0)
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.05)
"""


class NamespacesUnavailable(RuntimeError):
    pass


def ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


class Host:
    """One namespace with the address `address` on the network's bridge."""

    def __init__(self, network: Network, name: str, index: int) -> None:
        self.name = name
        self.netns = f"{network.tag}-{name}"
        self.address = f"{SUBNET}.{index}"
        self.port = f"p{index}"  # its end of the cable, on the bridge
        self.switch = network.switch

    def command(self, args: Sequence[str]) -> list[str]:
        """`args` run on this host (`ip netns exec` replaces itself with the program)."""
        return ["ip", "netns", "exec", self.netns, *args]

    def link(self, up: bool) -> None:
        """Plug this host's cable into the bridge, or pull it out (packets are then lost,
        not refused: connections to and from the host hang as after a crash)."""
        ip("-n", self.switch, "link", "set", self.port, "up" if up else "down")

    def start(
        self, name: str, args: Sequence[str], log_dir: Path, env: dict | None = None, pipes=False
    ) -> Process:
        """Start `args` on this host; its output goes to LOG_DIR/NETNS-NAME.log (see
        Process for `pipes`)."""
        return Process(f"{self.netns}-{name}", self.command(args), log_dir, env, pipes)

    def start_redis(self, log_dir: Path) -> Process:
        """A Redis listening on this host's address (REDIS_PORT), without persistence."""
        args = [require("redis-server"), "--bind", self.address, "--port", str(REDIS_PORT)]
        args += ["--save", "", "--appendonly", "no", "--protected-mode", "no"]
        return self.start("redis", args, log_dir)

    def start_daphne(self, log_dir: Path, env: dict, heap: Path | None = None) -> Process:
        """This project under daphne on this host's address (HTTP_PORT); with `heap`, daphne
        answers SIGUSR1 by writing what Python holds live there (tests/support/heap.py)."""
        args = [PYTHON, "-m", *(["tests.support.heap", str(heap)] if heap else [])]
        args += ["daphne", "-b", self.address, "-p", str(HTTP_PORT)]
        return self.start("daphne", [*args, "channels_app.asgi:application"], log_dir, env)

    def env(self, **extra: str) -> dict:
        """The environment of this project's processes on this host: production settings,
        which accept pages from the host's own address (ALLOWED_HOSTS)."""
        return project_env(
            DJANGO_SETTINGS_MODULE="settings.production",
            SECRET_KEY="tests-on-hosts-of-their-own",
            ALLOWED_HOSTS=self.address,
            **extra,
        )

    def wait_for_port(self, address: str, port: int, timeout: float = 30) -> None:
        """Wait until `address:port` accepts connections from this host."""
        args = [PYTHON, "-c", WAIT_FOR_PORT, address, str(port), str(timeout)]
        result = subprocess.run(self.command(args), timeout=timeout + 30)
        if result.returncode != 0:
            raise RuntimeError(f"{address}:{port} is not reachable from {self.name}")


class Network:
    """Hosts named `names`, each with its own address, on one bridge; `close()` removes
    every namespace it made (processes running in them must be stopped first)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.tag = f"pgw{os.getpid()}{secrets.token_hex(3)}"
        self.switch = f"{self.tag}-switch"
        self.namespaces: list[str] = []
        self.hosts: dict[str, Host] = {}
        if shutil.which("ip") is None:
            raise NamespacesUnavailable(
                "the `ip` command (iproute2) is not installed; run ./dev setup"
            )
        try:
            self._add_namespace(self.switch)
        except RuntimeError as exc:
            raise NamespacesUnavailable(
                f"cannot create a network namespace here ({exc}); these tests need root "
                "(CAP_SYS_ADMIN and CAP_NET_ADMIN) to build hosts of their own"
            ) from exc
        try:
            ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            ip("-n", self.switch, "link", "set", "br0", "up")
            for index, name in enumerate(names, start=1):
                self.hosts[name] = self._add_host(name, index)
        except BaseException:
            self.close()
            raise

    def _add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self.namespaces.append(name)

    def _add_host(self, name: str, index: int) -> Host:
        host = Host(self, name, index)
        self._add_namespace(host.netns)
        # A cable from the bridge to the host: created inside the namespaces, so its names
        # never meet another test's in the machine's own namespace.
        ip(
            "-n", self.switch, "link", "add", host.port, "type", "veth",
            "peer", "name", "eth0", "netns", host.netns,
        )  # fmt: skip
        ip("-n", self.switch, "link", "set", host.port, "master", "br0", "up")
        ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        ip("-n", host.netns, "link", "set", "eth0", "up")
        ip("-n", host.netns, "link", "set", "lo", "up")
        return host

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def close(self) -> None:
        # Deleting a namespace deletes its ends of the cables, and with them the other ends.
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        self.namespaces.clear()
