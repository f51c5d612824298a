"""Prometheus metrics, when OPTIONS["METRICS"] is on (needs the `metrics` extra).

Off (the default), `get()` returns None and nothing of prometheus_client is imported: every
place that counts checks `if metrics:` first, which is all it costs. On without
prometheus_client installed, they are off too (a system check error and one log line say so):
counting must never break a publish.

    # settings.py
    PUSHGATEWAY = {"BACKEND": ..., "OPTIONS": {"METRICS": True}}
    # urls.py
    path("metrics", pushgateway.metrics.view)

With several processes (daphne workers, gunicorn, Celery) set PROMETHEUS_MULTIPROC_DIR to an
empty directory for all of them before they start: each process writes its numbers there and
the view adds them up (prometheus_client's multiprocess mode). See docs/metrics.md.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from django.core.checks import CheckMessage, Error

from . import extras
from .backends import get_config

logger = logging.getLogger("pushgateway")

#: The extra that brings prometheus_client.
EXTRA = "metrics"
#: Histogram buckets of the waits measured in seconds, from 1 ms to 5 s.
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

_metrics: Metrics | None = None
_unavailable = False  # on, but prometheus_client cannot be imported (said once)
_lock = threading.Lock()


class Metrics:
    """The metrics of this process; names follow Prometheus' conventions. No label ever
    holds a channel name (unbounded), only small fixed sets."""

    def __init__(self, registry: Any = None) -> None:
        """Registered in prometheus_client's default registry, or in `registry`."""
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        registry = REGISTRY if registry is None else registry

        live = "livesum"  # gauges add up over the processes that are alive
        self.sockets = Gauge(
            "pushgateway_sockets",
            "Open WebSockets in this process.",
            multiprocess_mode=live,
            registry=registry,
        )
        self.streams = Gauge(
            "pushgateway_streams",
            "Open Server-Sent Events streams in this process.",
            multiprocess_mode=live,
            registry=registry,
        )
        self.subscriptions = Gauge(
            "pushgateway_subscriptions",
            "Channel subscriptions of the open WebSockets.",
            multiprocess_mode=live,
            registry=registry,
        )
        self.channels = Gauge(
            "pushgateway_channels_joined",
            "Channel-layer groups the hub has joined (one per channel with local sockets).",
            multiprocess_mode=live,
            registry=registry,
        )
        self.published = Counter(
            "pushgateway_hints_published",
            "Hints handed to the backend (after commit).",
            registry=registry,
        )
        self.sent = Counter(
            "pushgateway_hints_sent",
            "Hints the backend delivered to the layer or to Fanout.",
            registry=registry,
        )
        self.dropped = Counter(
            "pushgateway_hints_dropped",
            "Hints given up: queue_full (the queue was full), failed (retries ran out), "
            "rejected (refused by the service).",
            ["reason"],
            registry=registry,
        )
        self.repaired = Counter(
            "pushgateway_channels_repaired",
            "Channels whose pages were told to refetch after their hints were dropped.",
            registry=registry,
        )
        self.frames = Counter(
            "pushgateway_frames_delivered",
            "Message and resync frames written to WebSockets.",
            registry=registry,
        )
        self.resyncs = Counter(
            "pushgateway_resyncs_sent",
            "resync frames sent by the hub: healed (its layer came back), checked (the "
            "periodic or after-join check found a hint lost on the way).",
            ["cause"],
            registry=registry,
        )
        self.slow_clients = Counter(
            "pushgateway_slow_clients_closed",
            "WebSockets closed because the client did not read what it was sent.",
            registry=registry,
        )
        self.layer_outages = Counter(
            "pushgateway_layer_outages",
            "Times the hub lost its channel layer (and, when it came back, healed).",
            registry=registry,
        )
        self.subscribes_refused = Counter(
            "pushgateway_subscribes_refused",
            "Subscribes refused for what they would cost: channel_cap (the process has "
            "joined MAX_CHANNELS channels; unavailable), address_budget (the client's "
            "address spent its ADDRESS_JOIN_BURST; rate_limited).",
            ["reason"],
            registry=registry,
        )
        self.connections_refused = Counter(
            "pushgateway_connections_refused",
            "WebSockets closed at once for what they would cost: address_limit (the "
            "client's address has MAX_CONNECTIONS_PER_ADDRESS open; closed 4029).",
            ["reason"],
            registry=registry,
        )
        self.addresses = Gauge(
            "pushgateway_addresses_tracked",
            "Client addresses whose join budget this process remembers (at most 10,000).",
            multiprocess_mode=live,
            registry=registry,
        )
        self.join_wait = Histogram(
            "pushgateway_join_wait_seconds",
            "From a subscribe that needs a channel-layer join to the join being made (the "
            "joins of one client address are served in turn with everyone else's).",
            buckets=SECONDS,
            registry=registry,
        )
        self.verify = Histogram(
            "pushgateway_verify_seconds",
            "One periodic check of every joined channel's position (read in chunks of "
            "200 per Lua call).",
            buckets=SECONDS,
            registry=registry,
        )
        self.lag = Histogram(
            "pushgateway_delivery_lag_seconds",
            "From publishing a hint to writing it to the local WebSockets (clocks of the "
            "publishing and serving hosts must agree).",
            buckets=(*SECONDS, 10),
            registry=registry,
        )


def enabled() -> bool:
    return bool(get_config()["OPTIONS"].get("METRICS"))


def get() -> Metrics | None:
    """This process's metrics, or None when they are off (or cannot be on)."""
    global _metrics, _unavailable
    if _metrics is None and not _unavailable and enabled():
        with _lock:
            if _metrics is None and not _unavailable:
                try:
                    _metrics = Metrics()
                except ImportError as exc:
                    _unavailable = True
                    logger.error(
                        "pushgateway: OPTIONS['METRICS'] is on but %s cannot be imported, so "
                        "metrics are off: %s",
                        exc.name or "prometheus_client",
                        extras.install_hint(EXTRA),
                    )
    return _metrics


def check() -> list[CheckMessage]:
    """The system check error of metrics that are on without prometheus_client."""
    if not enabled() or not extras.missing(["prometheus_client"]):
        return []
    return [
        Error(
            "PUSHGATEWAY OPTIONS['METRICS'] is on, but prometheus_client is not installed.",
            hint=extras.install_hint(EXTRA),
            id="pushgateway.E010",
        )
    ]


def view(request) -> Any:
    """The metrics in Prometheus' text format (every process's, in multiprocess mode)."""
    from django.http import HttpResponse, HttpResponseNotFound
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        generate_latest,
        multiprocess,
    )

    if get() is None:
        return HttpResponseNotFound("metrics are off: set PUSHGATEWAY OPTIONS['METRICS']\n")
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
