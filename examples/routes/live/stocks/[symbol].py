"""
One symbol's price as a live chart: every second through the hub channel
``stocks:<SYMBOL>``, the last 60 first (``history=60``). An unknown symbol
is a 400 before the stream opens.
"""

from oxian_tw import HttpError


def GET(data, ctx):
    symbol = data["symbol"]
    if not ctx.dependencies.stock_service.is_valid_symbol(symbol):
        raise HttpError(400, "Invalid stock symbol")
    ctx.dependencies.feeds.start(ctx)
    ctx.response.sse(retry=5000, channels=[f"stocks:{symbol}"], history=60)
