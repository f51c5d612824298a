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


class FakeFanout:
    """Records each POST (time, path, headers, JSON body) and answers as told.

    `mode`: "ok" (200), "fail" (answer `fail_status` for the next `failures` requests,
    then 200), or "hang" (never answer until stop()). With an `upstream` (a real Pushpin's
    publish endpoint) it passes what it does not fail on to it: a faulty hosted service in
    front of a real one.
    """

    def __init__(self, upstream: str | None = None) -> None:
        self.upstream = upstream
        self.requests: list[dict] = []
        self.mode = "ok"
        self.fail_status = 500
        self.failures = 0
        self.released = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = {
                    "at": time.monotonic(),
                    "path": self.path,
                    "headers": dict(self.headers),
                    "json": json.loads(body),
                }
                fake.requests.append(request)
                if fake.mode == "hang":
                    fake.released.wait(30)
                    return
                if fake.mode == "fail" and fake.failures > 0:
                    fake.failures -= 1
                    request["status"] = fake.fail_status
                    self.send_response(fake.fail_status)
                    self.end_headers()
                    self.wfile.write(b"service trouble")
                    return
                status, answer = 200, b"Published\n"
                if fake.upstream:
                    status, answer = forward(fake.upstream + self.path, body, self.headers)
                request["status"] = status
                self.send_response(status)
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def published(self, **match) -> list[dict]:
        """Frames of the ws-message items answered with 200, with their time (`at`), that
        have every key=value of `match`."""
        out = []
        for request in self.requests:
            if request.get("status") != 200:
                continue
            for item in request["json"]["items"]:
                frame = json.loads(item["formats"]["ws-message"]["content"])
                if all(frame.get(k) == v for k, v in match.items()):
                    out.append({"at": request["at"], "frame": frame})
        return out

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
