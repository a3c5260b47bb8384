"""A random-walk price per validated symbol."""

import random

SYMBOLS = ("AAPL", "GOOG", "MSFT", "AMZN", "TSLA")
START = {"AAPL": 190.0, "GOOG": 140.0, "MSFT": 410.0, "AMZN": 180.0, "TSLA": 240.0}


class StockService:
    def __init__(self, seed=None):
        self._random = random.Random(seed)
        self._prices = dict(START)

    def is_valid_symbol(self, symbol):
        return symbol in SYMBOLS

    def get_price(self, symbol):
        """The next price: a step of at most ±1% from the last one."""
        if not self.is_valid_symbol(symbol):
            raise KeyError(symbol)
        step = self._random.uniform(-0.01, 0.01)
        price = round(self._prices[symbol] * (1 + step), 2)
        self._prices[symbol] = price
        return price
