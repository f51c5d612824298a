"""The HTTP client of the Fanout backends: publish requests over urllib3, signed with PyJWT.

Imported only when a Fanout backend is built (httppublish.py), since urllib3 and PyJWT come
with the `fanout` extra. One pooled connection, kept alive (only the sender thread posts);
every attempt has TIMEOUT, and urllib3's Retry retries connection errors, timeouts and
429/500/502/503/504 RETRIES times with backoff (0, 2, 4... x BACKOFF_FACTOR seconds), or after
the Retry-After the service asked for (at most RETRY_AFTER_MAX).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import urllib3
from urllib3.util.retry import RequestHistory, Retry

from ..sender import DeliveryError
from .base import BACKOFF_MAX, NetworkOptions

RETRY_STATUSES = (429, 500, 502, 503, 504)
# A refusal that may be about some items of a batch only: the caller halves the batch.
ITEM_STATUSES = (400, 413, 422)
#: The longest Retry-After honoured (seconds); a longer one is cut to this.
RETRY_AFTER_MAX = 30


class ReportingRetry(Retry):
    """urllib3's Retry, telling `on_retry` about each retry it makes (to count and log),
    and waiting at most RETRY_AFTER_MAX for a Retry-After (urllib3 2.7's `retry_after_max`,
    for older urllib3 2 too)."""

    def __init__(self, *args: Any, on_retry=None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_retry = on_retry

    def new(self, **kwargs: Any) -> ReportingRetry:
        kwargs.setdefault("on_retry", self.on_retry)
        return super().new(**kwargs)

    def parse_retry_after(self, retry_after: str) -> float:
        return min(super().parse_retry_after(retry_after), RETRY_AFTER_MAX)

    def increment(self, *args: Any, **kwargs: Any) -> ReportingRetry:
        retry = super().increment(*args, **kwargs)  # raises when no retry is left
        if self.on_retry is not None:
            self.on_retry(retry.history[-1])
        return retry


def authorization(iss: str | None, key: str | bytes | None) -> str | None:
    """The Authorization header of a publish request: a JWT signed with `key` when there
    is an `iss`, `key` itself as a bearer token when there is none, else nothing."""
    if iss:
        claims = {"iss": iss, "exp": int(time.time()) + 3600}
        return "Bearer " + jwt.encode(claims, key, algorithm="HS256")
    if key:
        return "Bearer " + (key.decode() if isinstance(key, bytes) else key)
    return None


class PublishClient:
    """POSTs `{"items": [...]}` to one publish endpoint.

    After calling `post`: the items were accepted, or DeliveryError says how many attempts
    were made and whether the service refused them for the items' sake (`refused`).
    """

    def __init__(
        self,
        endpoint: str,
        authorize: Callable[[], str | None],
        options: NetworkOptions,
        on_retry: Callable[[RequestHistory], None],
    ) -> None:
        self.endpoint = endpoint
        self.authorize = authorize
        self.timeout = options.TIMEOUT
        self.attempts = options.attempts
        self.retry = ReportingRetry(
            total=options.RETRIES,
            backoff_factor=options.BACKOFF_FACTOR,
            backoff_max=BACKOFF_MAX,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=["POST"],
            respect_retry_after_header=True,
            raise_on_status=False,  # the last answer is kept, to say what it was
            on_retry=on_retry,
        )
        self.forget_connections()

    def forget_connections(self) -> None:
        """A pool of its own (in a forked child: the parent's sockets stay the parent's)."""
        self.pool = urllib3.PoolManager(
            maxsize=1, retries=self.retry, timeout=urllib3.Timeout(total=self.timeout)
        )

    def post(self, items: list[dict]) -> None:
        """One publish request (urllib3 retries it); raises DeliveryError when it fails."""
        headers = {"Content-Type": "application/json"}
        auth = self.authorize()
        if auth:
            headers["Authorization"] = auth
        body = json.dumps({"items": items}).encode()
        try:
            response = self.pool.request("POST", self.endpoint, body=body, headers=headers)
        except urllib3.exceptions.MaxRetryError as exc:
            raise DeliveryError(f"{self.endpoint}: {exc.reason}", attempts=self.attempts) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise DeliveryError(f"{self.endpoint}: {exc}") from exc
        if response.status < 300:
            return
        detail = response.data[:200].decode("utf-8", "replace").strip()
        history = response.retries.history if response.retries else ()
        raise DeliveryError(
            f"HTTP {response.status} from {self.endpoint}: {detail}",
            attempts=len(history) + 1,
            refused=response.status in ITEM_STATUSES,
        )

    def close(self) -> None:
        self.pool.clear()
