"""Basic SSE: a counter event every second, ten of them, then the end."""

import time

from twisted.internet.task import LoopingCall


def GET(data, ctx):
    sse = ctx.response.sse(retry=1000)
    count = 0

    def tick():
        nonlocal count
        count += 1
        sse.send(
            {"count": count, "timestamp": int(time.time() * 1000)},
            event="counter",
            id=f"msg-{count}",
        )
        if count >= 10:
            sse.close()

    interval = LoopingCall(tick)
    interval.clock = ctx.clock
    interval.start(1, now=False)

    # The client left, or the stream ended: stop the timer.
    sse.done.addCallback(lambda _: interval.running and interval.stop())
