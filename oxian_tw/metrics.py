# -*- test-case-name: tests.test_hub -*-
"""
The app's counters in the Prometheus text exposition format (version
0.0.4), to serve from a route:

.. code-block:: python

    # routes/metrics.py
    from oxian_tw import Response
    from oxian_tw.metrics import CONTENT_TYPE, exposition

    def GET(data, ctx):
        return Response(exposition(ctx.app), headers={"Content-Type": CONTENT_TYPE})
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._app import OxianApp

__all__ = ("CONTENT_TYPE", "exposition")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# (name, type, help, attribute of HubStats)
_HUB = (
    ("oxian_hub_channels", "gauge", "Hub channels held.", "channels"),
    (
        "oxian_hub_subscriptions",
        "gauge",
        "Stream subscriptions to channels.",
        "subscribers",
    ),
    ("oxian_hub_published_total", "counter", "Events published.", "published"),
    (
        "oxian_hub_delivered_total",
        "counter",
        "Events handed to subscribers.",
        "delivered",
    ),
    (
        "oxian_hub_dropped_total",
        "counter",
        "Deliveries refused (closed or over budget).",
        "dropped",
    ),
    (
        "oxian_hub_replayed_total",
        "counter",
        "Events replayed from history.",
        "replayed",
    ),
    (
        "oxian_hub_resets_total",
        "counter",
        "Reset events sent for unresumable ids.",
        "resets",
    ),
    (
        "oxian_hub_duplicates_total",
        "counter",
        "Publishes answered with an earlier id (same idempotency key).",
        "duplicates",
    ),
    (
        "oxian_hub_gaps_total",
        "counter",
        "Holes in the live sequence caught up from history.",
        "gaps",
    ),
    (
        "oxian_hub_present",
        "gauge",
        "Streams present on channels in this process.",
        "present",
    ),
)


def exposition(app: OxianApp) -> bytes:
    """The metrics of ``app`` as Prometheus text."""
    stats = app.hub.stats()
    lines = []
    for name, kind, text, attribute in _HUB:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        lines.append(f"{name} {getattr(stats, attribute)}")
    lines += [
        "# HELP oxian_sse_streams Open SSE streams.",
        "# TYPE oxian_sse_streams gauge",
        f"oxian_sse_streams {len(app.streams)}",
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")
