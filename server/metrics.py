"""Prometheus metrics (prometheus-client), one registry per application instance.

A registry per app (not the library's global one) so that several apps in one process, as in tests,
do not collide. Later subsystems register their metrics on ``Metrics.registry``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import fields

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dispatch.publisher import OutboxStats
from server.notify.deriver import Deriver
from server.notify.sender import Sender

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Request latency buckets in seconds: REST calls are expected in single-digit milliseconds.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The application's metrics. HTTP metrics are labelled by route template, never the raw path
    (raw paths carry ids and would make the label set unbounded)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # process_cpu_seconds_total, process_resident_memory_bytes, open fds...: the replay report and
        # operators read the server's own cost from here.
        ProcessCollector(registry=self.registry)
        self.http_requests = Counter(
            "tot_http_requests",
            "HTTP requests handled, by method, route template and status code.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "tot_http_request_duration_seconds",
            "HTTP request handling time in seconds, by method and route template.",
            ("method", "route"),
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )

        # Tasks alive on the server's loop: a leak of tasks (one per connection, deadline or publish
        # left behind) shows here first (loadtests/soak.py reads it). O(tasks) per scrape.
        Gauge(
            "tot_asyncio_tasks", "asyncio tasks alive on the server's event loop.", registry=self.registry
        ).set_function(_task_count)
        self.ws_connections = Gauge(
            "tot_ws_connections", "Open WebSocket connections, by role.", ("role",), registry=self.registry
        )
        self.ws_frames = Counter(
            "tot_ws_frames",
            "Client frames received, by op (unknown ops count as 'invalid').",
            ("op",),
            registry=self.registry,
        )
        self.ws_errors = Counter(
            "tot_ws_errors", "Error frames sent, by error code.", ("code",), registry=self.registry
        )
        self.ws_closes = Counter(
            "tot_ws_closes",
            "Connections closed by the server, by close code.",
            ("code",),
            registry=self.registry,
        )
        self.fixes = Counter(
            "tot_location_fixes", "Location fixes received, by outcome.", ("outcome",), registry=self.registry
        )
        self.ws_direct_frames = Gauge(
            "tot_ws_direct_frames",
            "Location frames taken straight from the WebSocket protocol, without the ASGI queue, since "
            "start (server/ws/uvicorn_protocol.py); read from the gateway's own count when scraped.",
            registry=self.registry,
        )

    def watch_outbox(self, stats: OutboxStats) -> None:
        """Expose the outbox's counters (``dispatch/publisher.py`` ``OutboxStats``), read when scraped:
        ``tot_outbox_<counter>`` (rows staged, published by their committer, left to the relay after a
        failed publish, relayed, pruned...; ``tot_outbox_relay_active`` is 1 in the process holding
        the relay lease)."""
        for counter in fields(stats):
            gauge = Gauge(
                f"tot_outbox_{counter.name}",
                f"Outbox: {counter.name.replace('_', ' ')} since start (dispatch/publisher.py OutboxStats).",
                registry=self.registry,
            )
            gauge.set_function(_reader(stats, counter.name))

    def watch_notify(self, sender: Sender, deriver: Deriver) -> None:
        """Expose the notification pipeline's counters (``server/notify/``), read when scraped:
        ``tot_notify_<counter>`` of the sender (sent, retried, failed, deferred, unknown, suppressed) and
        ``tot_notify_derived`` (rows the rules wrote in this process)."""
        for counter in fields(sender.stats):
            gauge = Gauge(
                f"tot_notify_{counter.name}",
                f"Notifications: {counter.name} since start (server/notify/sender.py SenderStats).",
                registry=self.registry,
            )
            gauge.set_function(_reader(sender.stats, counter.name))
        derived = Gauge(
            "tot_notify_derived", "Notification rows derived since start.", registry=self.registry
        )
        derived.set_function(_reader(deriver, "derived"))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


def _task_count() -> float:
    """The running loop's live tasks (0 outside a loop: a scrape is always inside the server's)."""
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:
        return 0.0


def _reader(stats: object, name: str) -> Callable[[], float]:
    return lambda: float(getattr(stats, name))


class MetricsMiddleware:
    """Pure ASGI middleware recording count and latency of every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.metrics.http_requests.labels(method, template, str(status)).inc()
            self.metrics.http_latency.labels(method, template).observe(time.perf_counter() - started)
