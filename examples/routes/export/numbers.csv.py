"""
CSV streaming with ``pipe``: rows come from a generator, sent as the client
reads them; ``?rows=N`` (default 1000, at most 10,000,000).
"""

from dataclasses import dataclass
from typing import Annotated

from annotated_types import Interval


@dataclass
class Params:
    rows: Annotated[int, Interval(ge=0, le=10_000_000)] = 1000


def rows(count):
    yield "n,square,cube\n"
    for n in range(1, count + 1):
        yield f"{n},{n * n},{n * n * n}\n"


async def GET(data: Params, ctx):
    count = data.rows
    ctx.response.stream(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": "attachment; filename=numbers.csv",
        }
    )
    await ctx.response.pipe(rows(count))
