"""JSON streaming: ``{"items": [...]}`` built one item at a time."""

import json
import time

from ._params import number


async def GET(data, ctx):
    count = number(data, "count", 5, low=0, high=1000, kind=int)
    stream = ctx.response.stream(
        headers={"Content-Type": "application/json; charset=utf-8"}
    )
    await stream.write('{"items":[')
    for i in range(1, count + 1):
        if i > 1:
            await stream.write(",")
        item = {"id": i, "timestamp": int(time.time() * 1000)}
        await stream.write(json.dumps(item, separators=(",", ":")))
        await ctx.sleep(0.5)
    await stream.write("]}")
