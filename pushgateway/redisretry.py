"""The retry policy of every Redis call a publisher makes: which errors, how often, how long.

redis-py's own Retry does the work (one policy for the position store, the pub/sub
publisher and the core layer's group_send); this module only says what is worth another
attempt and runs a call under the policy, so no caller writes the cleanup hook again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def retried_errors() -> tuple[type[Exception], ...]:
    """The errors worth another attempt at a Redis call: connection trouble and timeouts
    (redis-py's own, and the builtin ones asyncio.wait_for and sockets raise)."""
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:  # a layer without redis-py
        return (ConnectionError, TimeoutError)
    return (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)


def redis_retry(
    retries: int, backoff_factor: float, backoff_max: float, *, for_asyncio: bool = False
) -> Any:
    """redis-py's Retry: `retries` more attempts after sleeps of 2, 4, 8... x backoff_factor
    seconds (at most `backoff_max` each)."""
    from redis.backoff import ExponentialBackoff

    if for_asyncio:
        from redis.asyncio.retry import Retry
    else:
        from redis.retry import Retry
    backoff = ExponentialBackoff(cap=backoff_max, base=backoff_factor)
    return Retry(backoff, retries, supported_errors=retried_errors())


def call(retry: Any, func: Callable[[], T]) -> T:
    """`func()`, retried under `retry` (a synchronous Retry, or None: one attempt)."""
    if retry is None:
        return func()
    # redis-py already dropped the connection that failed; the next attempt takes another.
    return retry.call_with_retry(func, lambda error: None)


async def acall(retry: Any, func: Callable[[], Awaitable[T]]) -> T:
    """`await func()`, retried under `retry` (an asyncio Retry, or None: one attempt)."""
    if retry is None:
        return await func()
    return await retry.call_with_retry(func, _nothing_to_clean)


async def _nothing_to_clean(error: Exception) -> None:
    pass
