"""
Stock price updates for one symbol every ``?interval=`` seconds (30 by
default). An unknown symbol is a 400 before the stream opens.
"""

import time
from dataclasses import dataclass

from twisted.internet.task import LoopingCall

from oxian_tw import HttpError

from ..._params import Interval


@dataclass
class Params:
    symbol: str
    interval: Interval = 30


def GET(data: Params, ctx):
    stock_service = ctx.dependencies.stock_service
    symbol = data.symbol
    # Validate before sse(): afterwards the status line is already sent.
    if not stock_service.is_valid_symbol(symbol):
        raise HttpError(400, "Invalid stock symbol")
    every = data.interval
    sse = ctx.response.sse(retry=10000)
    last_price = None

    def send_price_update():
        nonlocal last_price
        try:
            current_price = stock_service.get_price(symbol)
        except Exception:
            sse.send({"error": f"Failed to fetch price for {symbol}"}, event="error")
            return
        if current_price == last_price:
            return
        change = current_price - last_price if last_price else 0
        now = int(time.time() * 1000)
        sse.send(
            {
                "symbol": symbol,
                "price": current_price,
                "change": round(change, 2),
                "changePercent": change / last_price * 100 if last_price else 0,
                "timestamp": now,
            },
            event="price-update",
            id=f"{symbol}-{now}",
        )
        last_price = current_price

    send_price_update()
    updates = LoopingCall(send_price_update)
    updates.clock = ctx.clock
    updates.start(every, now=False)
    sse.done.addCallback(lambda _: updates.stop())
