"""
Error handling in streams: data every ``?interval=`` seconds (2 by
default) until the simulated external source fails (on attempt
``?fail_on=``, 3 by default); then an ``error`` event and the stream closes.
"""

import time
from dataclasses import dataclass
from typing import Annotated

from annotated_types import Interval as Between
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ._params import Interval

log = Logger()


class ExternalSourceError(Exception):
    pass


@dataclass
class Params:
    fail_on: Annotated[int, Between(ge=1, le=1000)] = 3
    interval: Interval = 2


def GET(data: Params, ctx):
    # Declared parameters are checked before the handler runs: a bad one is
    # a 422 before sse() sends its 200.
    fail_on, every = data.fail_on, data.interval
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
