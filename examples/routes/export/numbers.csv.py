"""
CSV streaming with ``pipe``: rows come from a generator, sent as the client
reads them; ``?rows=N`` (default 1000, at most 10,000,000).
"""

from .._params import number


def rows(count):
    yield "n,square,cube\n"
    for n in range(1, count + 1):
        yield f"{n},{n * n},{n * n * n}\n"


async def GET(data, ctx):
    count = number(data, "rows", 1000, low=0, high=10_000_000, kind=int)
    ctx.response.stream(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": "attachment; filename=numbers.csv",
        }
    )
    await ctx.response.pipe(rows(count))
