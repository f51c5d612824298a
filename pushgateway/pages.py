"""What a page learns when it is rendered: the positions of the channels it watches.

Call :func:`watch` in the view before it queries what it shows. The positions read then are
rendered into the page by ``{% pushgateway_script %}``; the browser module subscribes with
them, so anything published after that moment (even before the socket is open) makes the
page refetch, and nothing published before it does.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from django.http import HttpRequest

from .backends import get_backend, get_config
from .message import validate_channel
from .protocol import Position, is_private
from .tokens import make_token

ATTRIBUTE = "_pushgateway_page"

#: Seconds watch() waits for the position store (OPTIONS["WATCH_TIMEOUT"]): a store on the
#: same network answers in a millisecond; one failing over must not hold every render.
DEFAULT_WATCH_TIMEOUT = 0.25
#: Reads that may wait on a silent store at once; past them a render does not wait at all.
MAX_WAITING_READS = 4

logger = logging.getLogger("pushgateway")


class DeadlineReader:
    """Reads positions in worker threads and waits for each read at most a deadline.

    A synchronous Redis read cannot be cut short from outside: a read that misses its
    deadline runs on in its thread until the store answers or the connection times out.
    At most MAX_WAITING_READS do; while they all wait, the store is taken for silent and
    renders do not wait at all. The first answer frees a thread again.
    """

    def __init__(self, workers: int = MAX_WAITING_READS) -> None:
        self.workers = workers
        self.lock = threading.Lock()
        self.busy = 0
        self.executor: ThreadPoolExecutor | None = None
        self.pid: int | None = None

    def read(self, read: Callable, channels: Sequence[str], timeout: float) -> dict | None:
        """`read(channels)`, or None when it did not answer within `timeout` seconds."""
        with self.lock:
            if self.pid != os.getpid():  # first use, or a forked child: threads of its own
                self.executor = ThreadPoolExecutor(self.workers, "pushgateway-watch")
                self.pid, self.busy = os.getpid(), 0
            if self.busy >= self.workers:
                return None
            self.busy += 1
            future = self.executor.submit(read, channels)
        future.add_done_callback(self._done)
        try:
            return future.result(timeout)
        except TimeoutError:
            return None

    def _done(self, future) -> None:
        with self.lock:
            self.busy -= 1


_reader = DeadlineReader()


def read_in_time(channels: Sequence[str]) -> dict[str, Position | None]:
    """The positions of `channels`, or None for each when the store does not answer within
    OPTIONS["WATCH_TIMEOUT"] (the page then resyncs once it subscribes)."""
    timeout = get_config()["OPTIONS"].get("WATCH_TIMEOUT", DEFAULT_WATCH_TIMEOUT)
    positions = _reader.read(get_backend().read_positions, channels, timeout)
    if positions is None:
        logger.warning(
            "pushgateway: the position store did not answer within %s s; rendering "
            "without positions (pages resync once)",
            timeout,
        )
        return dict.fromkeys(channels)
    return positions


class Page:
    """The channels a page watches: their positions at render time, and tokens for the
    private ones."""

    def __init__(self) -> None:
        self.positions: dict[str, Position | None] = {}
        self.tokens: dict[str, str] = {}

    def client_config(self) -> dict:
        config = {}
        if self.positions:
            config["positions"] = {
                c: p.as_json() if p is not None else None for c, p in self.positions.items()
            }
        if self.tokens:
            config["tokens"] = self.tokens
        return config


def page_of(request: HttpRequest) -> Page:
    page = getattr(request, ATTRIBUTE, None)
    if page is None:
        page = Page()
        setattr(request, ATTRIBUTE, page)
    return page


def watch(request: HttpRequest, *channels: str) -> dict[str, Position | None]:
    """Read the positions of `channels` now and render them into this request's page.

    Call it before the view queries the data the page shows. A `private-` channel also
    gets its token rendered: call watch() only for channels this user may see (the page is
    then `Cache-Control: private` with ClientIdMiddleware; the browser module renews an
    expired token by fetching the page again, so this view decides anew). Returns
    the positions (None for one that cannot be read now, or not within
    OPTIONS["WATCH_TIMEOUT"]; the page then refetches once it subscribes). Raises
    InvalidChannelName for a bad name.
    """
    for channel in channels:
        validate_channel(channel)
    positions = read_in_time(channels)
    page = page_of(request)
    page.positions.update(positions)
    for channel in channels:
        if is_private(channel):
            page.tokens[channel] = make_token(channel)
    return positions
