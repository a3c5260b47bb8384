"""
Real-time dashboard: this process's CPU, memory and open streams every
``?interval=`` seconds (5 by default).
"""

import time
from dataclasses import dataclass

from twisted.internet.task import LoopingCall

from .._params import Interval


@dataclass
class Params:
    interval: Interval = 5


def GET(data: Params, ctx):
    metrics_service = ctx.dependencies.metrics_service
    every = data.interval
    sse = ctx.response.sse(retry=5000)

    def send_metrics():
        try:
            metrics = metrics_service.get_current_metrics(ctx.app)
        except Exception:
            sse.send({"error": "Failed to fetch metrics"}, event="error")
            return
        sse.send(metrics, event="metrics", id=f"metrics-{int(time.time() * 1000)}")

    send_metrics()
    updates = LoopingCall(send_metrics)
    updates.clock = ctx.clock
    updates.start(every, now=False)
    sse.done.addCallback(lambda _: updates.stop())
