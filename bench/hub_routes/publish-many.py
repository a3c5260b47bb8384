"""
The hub benchmark's publish rate: ``count`` events of 256 B published back
to back on channel ``rate`` (nobody subscribed), every publish awaited;
answers the seconds it took, measured in the process.
"""

import time

from twisted.internet.defer import gatherResults

PAD = "x" * 214


async def POST(data, ctx):
    count = int(data["count"])
    started = time.perf_counter()
    await gatherResults(
        [
            ctx.hub.publish("rate", {"seq": n, "t": started, "pad": PAD}, "message")
            for n in range(count)
        ]
    )
    return {"seconds": time.perf_counter() - started, "count": count}
