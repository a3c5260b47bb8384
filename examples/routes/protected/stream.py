"""
Streaming with authentication: ``Authorization: Bearer <token>`` (the demo
token is ``demo-token``) or, from a browser's EventSource, ``?token=`` with
a stream token from ``POST /protected/token``: both checked by this
folder's middleware before the stream opens.
"""

import time
from dataclasses import dataclass

from twisted.internet.task import LoopingCall

from .._params import Interval


@dataclass
class Params:
    interval: Interval = 10


def GET(data: Params, ctx):
    # This folder's middleware has answered strangers with a 401.
    user = ctx.account
    sse = ctx.response.sse()
    sse.send(
        {"message": f"Welcome {user['name']}", "userId": user["id"]},
        event="authenticated",
    )

    def notify():
        sse.send(
            {"userId": user["id"], "timestamp": int(time.time() * 1000)},
            event="notification",
        )

    notifications = LoopingCall(notify)
    notifications.clock = ctx.clock
    notifications.start(data.interval, now=False)
    sse.done.addCallback(lambda _: notifications.stop())
