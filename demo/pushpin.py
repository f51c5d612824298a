"""A local Pushpin in front of this project (what Fastly Fanout does in production).

`write_config` writes a Pushpin configuration of its own directory, ports and IPC names;
`command` runs Pushpin with it, routing every request to the origin (WebSockets as
WebSocket-over-HTTP). The origin must run with PUSHGATEWAY_BACKEND=fanout and
GRIP_URL=grip_url(...). Used by `./dev pushpin-demo` (demo/pushpin_demo.py) and the tests
(tests/support/servers.py). As shipped, Debian's Pushpin cannot reach an origin from a
non-root foreground run unless zurl is one of its services, talking to the proxy through the
run directory.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def grip_url(publish_port: int, sig_key: str) -> str:
    return f"http://127.0.0.1:{publish_port}?key={sig_key}&verify-iss=pushpin"


def write_config(root: Path, port: int, publish_port: int, sig_key: str) -> Path:
    """A Pushpin configuration with its own run directory, IPC names and ports."""
    (root / "run").mkdir(parents=True, exist_ok=True)
    (root / "log").mkdir(exist_ok=True)
    config = root / "pushpin.conf"
    config.write_text(
        f"""[global]
include={{libdir}}/internal.conf
rundir={root}/run
ipc_prefix=pp{port}-
[runner]
services=condure,zurl,pushpin-proxy,pushpin-handler
http_port=127.0.0.1:{port}
logdir={root}/log
[proxy]
zurl_out_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-in
zurl_out_stream_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-in-stream
zurl_in_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-out
sig_key={sig_key}
sig_iss=pushpin
updates_check=off
[handler]
push_in_spec=ipc://{{rundir}}/{{ipc_prefix}}push-in
push_in_sub_specs=ipc://{{rundir}}/{{ipc_prefix}}push-in-sub
command_spec=ipc://{{rundir}}/{{ipc_prefix}}command
push_in_http_addr=127.0.0.1
push_in_http_port={publish_port}
"""
    )
    return config


def command(config: Path, origin_port: int) -> list[str]:
    pushpin = shutil.which("pushpin")
    if pushpin is None:
        raise RuntimeError("pushpin is not installed (Debian package 'pushpin'); run ./dev setup")
    return [
        pushpin,
        "--config",
        str(config),
        "--merge-output",
        "--route",
        f"* 127.0.0.1:{origin_port},over_http",
    ]
