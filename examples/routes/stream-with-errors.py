"""
Error handling in streams: data every ``?interval=`` seconds (2 by
default) until the simulated external source fails (on attempt
``?fail_on=``, 3 by default); then an ``error`` event and the stream closes.
"""

import time

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ._params import interval, number

log = Logger()


class ExternalSourceError(Exception):
    pass


def GET(data, ctx):
    # Parameters first: once sse() is called the 200 is on its way.
    fail_on = number(data, "fail_on", 3, low=1, high=1000, kind=int)
    every = interval(data, 2)
    sse = ctx.response.sse(retry=5000)
    attempts = 0

    def fetch_external_data():
        nonlocal attempts
        attempts += 1
        if attempts >= fail_on:
            raise ExternalSourceError(f"source failed on attempt {attempts}")
        return {"attempt": attempts, "value": attempts * 10}

    def process_data():
        try:
            sse.send(fetch_external_data(), event="data")
        except ExternalSourceError as error:
            log.warn(
                "Stream error: {error} (request {id})", error=error, id=ctx.request_id
            )
            sse.send(
                {
                    "error": "Data processing failed",
                    "timestamp": int(time.time() * 1000),
                },
                event="error",
            )
            sse.close()

    processing = LoopingCall(process_data)
    processing.clock = ctx.clock
    processing.start(every, now=False)
    sse.done.addCallback(lambda _: processing.stop())
