"""
Live feeds for the demo page's charts, through the hub: every second, each
symbol's price on the channel ``stocks:<SYMBOL>`` and this server's metrics
on ``dashboard``. Subscribers ask for ``history=60``, so a chart opens with
the last minute already drawn.

The feed starts with its first subscriber and runs until shutdown. Each
tick is published with an idempotency key naming its second: several
processes sharing a Redis hub publish each tick once, whoever is first.
"""

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from .stocks import SYMBOLS

log = Logger()

#: Seconds between two ticks.
EVERY = 1.0


class Feeds:
    def __init__(self, stock_service, metrics_service):
        self._stocks = stock_service
        self._metrics = metrics_service
        self._loop = None

    def start(self, ctx):
        """Start ticking on the app's clock and hub (once; later calls do nothing)."""
        if self._loop is not None:
            return
        self._loop = LoopingCall(self._tick, ctx.app, ctx.hub, ctx.clock)
        self._loop.clock = ctx.clock
        self._loop.start(EVERY, now=True)

    def stop(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def _tick(self, app, hub, clock):
        second = int(clock.seconds())
        key = str(second)
        for symbol in SYMBOLS:
            price = {
                "symbol": symbol,
                "price": self._stocks.get_price(symbol),
                "timestamp": second * 1000,
            }
            self._publish(hub, f"stocks:{symbol}", price, "price", key)
        metrics = self._metrics.get_current_metrics(app)
        self._publish(hub, "dashboard", metrics, "metrics", key)

    def _publish(self, hub, channel, data, event, key):
        published = hub.publish(channel, data, event=event, idempotency_key=key)
        # A hub that is down (Redis away) costs ticks, never the loop.
        published.addErrback(
            lambda failure: log.warn(
                "feed tick on {channel} lost: {why}",
                channel=channel,
                why=failure.value,
            )
        )
