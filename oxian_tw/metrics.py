# -*- test-case-name: tests.test_metrics -*-
"""
The app's metrics with prometheus-client, in a registry of its own
(``app.metrics.registry``): request durations by route and status, bytes
sent, open SSE streams by route, slow-consumer kicks and drops, stuck
streams closed, heartbeats, the hub's counters, and the process's CPU,
memory and open files.

``twistd oxian --metrics /metrics`` serves them; embedded, mount
``app.metrics.registry`` wherever you serve Prometheus, or from a route:

.. code-block:: python

    # routes/metrics.py
    from oxian_tw import Response
    from oxian_tw.metrics import CONTENT_TYPE, exposition

    def GET(data, ctx):
        return Response(exposition(ctx.app), headers={"Content-Type": CONTENT_TYPE})

Requests are recorded from the moment ``app.metrics`` is first used (at
startup with ``--metrics``); until then they cost nothing.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from ._eventstream import SSE_COUNTERS

if TYPE_CHECKING:
    from ._app import OxianApp

__all__ = ("CONTENT_TYPE", "Metrics", "exposition")

#: The content type of `exposition`'s text: the classic text format, which
#: every Prometheus-compatible scraper reads.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# (name, type, help, attribute of HubStats)
_HUB = (
    ("oxian_hub_channels", "gauge", "Hub channels held.", "channels"),
    (
        "oxian_hub_subscriptions",
        "gauge",
        "Stream subscriptions to channels.",
        "subscribers",
    ),
    ("oxian_hub_published", "counter", "Events published.", "published"),
    ("oxian_hub_delivered", "counter", "Events handed to subscribers.", "delivered"),
    (
        "oxian_hub_dropped",
        "counter",
        "Deliveries refused (closed or over budget).",
        "dropped",
    ),
    ("oxian_hub_replayed", "counter", "Events replayed from history.", "replayed"),
    ("oxian_hub_resets", "counter", "Reset events sent for unresumable ids.", "resets"),
    (
        "oxian_hub_duplicates",
        "counter",
        "Publishes answered with an earlier id (same idempotency key).",
        "duplicates",
    ),
    (
        "oxian_hub_gaps",
        "counter",
        "Holes in the live sequence caught up from history.",
        "gaps",
    ),
    (
        "oxian_hub_lagged",
        "counter",
        "Streams that fell behind and were caught up from history.",
        "lagged",
    ),
    (
        "oxian_hub_received_bytes",
        "counter",
        "Bytes received from the hub's server (Redis).",
        "received",
    ),
    (
        "oxian_hub_present",
        "gauge",
        "Streams present on channels in this process.",
        "present",
    ),
)

# (name, help, attribute of SSE_COUNTERS)
_SSE = (
    (
        "oxian_sse_slow_consumer_disconnects",
        "SSE clients disconnected for falling behind.",
        "kicked",
    ),
    (
        "oxian_sse_slow_consumer_drops",
        "Events dropped for SSE clients that fell behind.",
        "dropped",
    ),
    (
        "oxian_sse_stuck_closes",
        "SSE streams closed after their write deadline.",
        "stuck",
    ),
    ("oxian_sse_heartbeats", "Heartbeats sent to silent SSE streams.", "heartbeats"),
)


class _AppCollector(Collector):
    """What is read when scraped: open streams by route, hub and SSE counters."""

    def __init__(self, app: OxianApp) -> None:
        self._app = app

    def collect(self) -> Iterator[Any]:
        streams = GaugeMetricFamily(
            "oxian_sse_streams", "Open SSE streams, by route.", labels=["route"]
        )
        for route, count in sorted(self._app.streams._by_route().items()):
            streams.add_metric([route], count)
        yield streams
        yield GaugeMetricFamily(
            "oxian_requests_in_flight",
            "Requests being served: not yet answered, or still streaming.",
            value=self._app.in_flight,
        )
        yield GaugeMetricFamily(
            "oxian_connections_open",
            "Client connections open on the app's sites.",
            value=self._app.open_connections,
        )
        stats = self._app.hub.stats()
        for name, kind, text, attribute in _HUB:
            family = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
            yield family(name, text, value=getattr(stats, attribute))
        for name, text, attribute in _SSE:
            yield CounterMetricFamily(
                name, text, value=getattr(SSE_COUNTERS, attribute)
            )


#: Request duration buckets, seconds (prometheus-client's defaults).
BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)


_LABELS = (*(str(bound) for bound in BUCKETS), "+Inf")


class _Series:
    """One route and status: bucket counts (the last is +Inf), sum, bytes."""

    __slots__ = ("buckets", "seconds", "sent")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.seconds = 0.0
        self.sent = 0


class _RequestCollector(Collector):
    """The request series, turned into metric families when scraped."""

    def __init__(self, series: dict[tuple[str, int], _Series]) -> None:
        self._series = series

    def collect(self) -> Iterator[Any]:
        duration = HistogramMetricFamily(
            "oxian_http_request_duration_seconds",
            "Time from a request's arrival to its response's end, by route and status.",
            labels=["route", "status"],
        )
        sent: dict[str, int] = {}
        for (route, status), series in sorted(self._series.items()):
            total, buckets = 0, []
            for bound, count in zip(_LABELS, series.buckets, strict=True):
                total += count
                buckets.append((bound, total))
            duration.add_metric([route, str(status)], buckets, series.seconds)
            sent[route] = sent.get(route, 0) + series.sent
        yield duration
        body = CounterMetricFamily(
            "oxian_http_response_bytes",
            "Response body bytes sent, by route.",
            labels=["route"],
        )
        for route, count in sorted(sent.items()):
            body.add_metric([route], count)
        yield body


class Metrics:
    """
    ``app.metrics``: the app's Prometheus registry and the request metrics
    it records.

    :ivar registry: a ``prometheus_client.CollectorRegistry`` of this app.
    """

    def __init__(self, app: OxianApp) -> None:
        self.registry = CollectorRegistry()
        # Counted here, per request, in plain lists (no lock, no label
        # lookup); made into metric families only when scraped.
        self._series: dict[tuple[str, int], _Series] = {}
        self.registry.register(_RequestCollector(self._series))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.registry.register(_AppCollector(app))

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

    def _request(self, route: str, status: int, seconds: float, sent: int) -> None:
        series = self._series.get((route, status))
        if series is None:
            series = self._series[route, status] = _Series()
        series.buckets[bisect_left(BUCKETS, seconds)] += 1
        series.seconds += seconds
        series.sent += sent


def exposition(app: OxianApp) -> bytes:
    """The metrics of ``app`` as Prometheus text (``app.metrics``'s)."""
    return app.metrics.exposition()
