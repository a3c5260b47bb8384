"""
A per-route limit for the example's chat send: a token bucket per sender
(its token's user, else its address), on the app's clock. (``--rate-publishes``
limits every publish of an app; this limits one route.)
"""

import collections
import math

from oxian_tw import HttpError


class SendLimit:
    """``rate`` messages a second per sender, a burst of ``rate``."""

    def __init__(self, rate=5, kept=10_000):
        self.rate = rate
        self._kept = kept
        self._buckets = collections.OrderedDict()

    def check(self, ctx):
        """Take a token for the request's sender, or raise 429."""
        user = getattr(ctx, "user", None)
        who = f"sub:{user['sub']}" if user else f"addr:{ctx.request.client}"
        now = ctx.clock.seconds()
        tokens, then = self._buckets.pop(who, (self.rate, now))
        tokens = min(self.rate, tokens + (now - then) * self.rate)
        if tokens < 1:
            self._buckets[who] = (tokens, now)
            wait = math.ceil((1 - tokens) / self.rate)
            raise HttpError(
                429,
                "Too many messages; slow down",
                code="rate_limited",
                headers={"Retry-After": str(max(1, wait))},
            )
        self._buckets[who] = (tokens - 1, now)
        while len(self._buckets) > self._kept:
            self._buckets.popitem(last=False)
