"""A local HTTP server standing in for the hosted Fanout publish API, faults included."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def forward(url: str, body: bytes, headers) -> tuple[int, bytes]:
    names = ("Content-Type", "Authorization")
    request = urllib.request.Request(
        url, data=body, headers={k: headers[k] for k in names if headers.get(k)}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def frame_of(item: dict) -> dict:
    """The wire protocol frame an item carries (GRIP `ws-message` or realm `json-object`)."""
    formats = item["formats"]
    if "ws-message" in formats:
        return json.loads(formats["ws-message"]["content"])
    return formats["json-object"]


class FakeFanout:
    """Records each POST (time, path, headers, JSON body, the client's port) and answers as
    told. Connections are kept alive (HTTP/1.1), as Fanout's are.

    `mode`: "ok" (200), "fail" (answer `fail_status` for the next `failures` requests, with
    `Retry-After: retry_after` if that is set, then 200), or "hang" (never answer until
    stop()). `refuse`: channel names the service refuses: a request with an item on one of
    them is answered 400, whatever else it carries (as Fanout answers for a bad item). With
    an `upstream` (a real Pushpin's publish endpoint) it passes what it does not fail on to
    it: a faulty hosted service in front of a real one.
    """

    def __init__(self, upstream: str | None = None) -> None:
        self.upstream = upstream
        self.requests: list[dict] = []
        self.mode = "ok"
        self.fail_status = 500
        self.failures = 0
        self.retry_after: str | None = None
        self.refuse: set[str] = set()
        self.released = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self, status: int, body: bytes, headers: dict | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = {
                    "at": time.monotonic(),
                    "path": self.path,
                    "headers": dict(self.headers),
                    "json": json.loads(body),
                    "client_port": self.client_address[1],
                }
                fake.requests.append(request)
                if fake.mode == "hang":
                    fake.released.wait(30)
                    self.close_connection = True
                    return
                if fake.mode == "fail" and fake.failures > 0:
                    fake.failures -= 1
                    request["status"] = fake.fail_status
                    headers = {"Retry-After": fake.retry_after} if fake.retry_after else {}
                    self.answer(fake.fail_status, b"service trouble", headers)
                    return
                refused = [
                    item["channel"]
                    for item in request["json"]["items"]
                    if item["channel"] in fake.refuse
                ]
                if refused:
                    request["status"] = 400
                    self.answer(400, f"Bad Request: invalid item on {refused[0]}".encode())
                    return
                status, answer = 200, b"Published\n"
                if fake.upstream:
                    status, answer = forward(fake.upstream + self.path, body, self.headers)
                request["status"] = status
                self.answer(status, answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def published(self, **match) -> list[dict]:
        """Frames of the items answered with 200, with their time (`at`) and channel as
        published (`channel`), that have every key=value of `match`."""
        out = []
        for request in self.requests:
            if request.get("status") != 200:
                continue
            for item in request["json"]["items"]:
                frame = frame_of(item)
                if all(frame.get(k) == v for k, v in match.items()):
                    out.append({"at": request["at"], "channel": item["channel"], "frame": frame})
        return out

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
