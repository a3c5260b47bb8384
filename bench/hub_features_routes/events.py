"""
The hub benchmark's subscribe route with the issue-17 features on: each
subscriber is present on the channel (with info) and asks for the last 10
events (none are kept when the measured run starts: the warm-up uses
another channel).
"""

import itertools

_numbers = itertools.count()


def GET(data, ctx):
    ctx.response.sse(
        channels=[data.get("channel", "bench")],
        history=10,
        presence={"client": next(_numbers)},
    )
