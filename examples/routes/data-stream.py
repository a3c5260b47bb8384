"""JSON streaming: ``{"items": [...]}`` built one item at a time."""

import json
import time
from dataclasses import dataclass
from typing import Annotated

from annotated_types import Interval


@dataclass
class Params:
    count: Annotated[int, Interval(ge=0, le=1000)] = 5


async def GET(data: Params, ctx):
    count = data.count
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
