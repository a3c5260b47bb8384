# -*- test-case-name: tests.test_ratelimit -*-
"""
Rate limits (SPEC §16): token buckets per client address or subject, off
until configured.

- ``--rate-connections N``: new connections per second per peer address
  (no header exists yet, so behind a proxy this limits the proxy);
- ``--rate-requests N``: requests per second per client address (the
  forwarded one when the peer is a ``--trusted-proxy``);
- ``--rate-publishes N``: publishes per second from requests
  (``ctx.hub.publish``) per subject (``ctx.user``'s ``sub``) or address.

Each is a bucket of ``N`` tokens refilled at ``N`` a second: a burst of
``N``, then ``N`` a second. Past it: ``429`` JSON with ``Retry-After`` (an
SSE request gets it before any header; a new connection gets it and is
closed). A table holds at most `KEPT` keys: the least recently seen go
first (a key idle for a second holds a full bucket, so forgetting it
changes nothing), so a flood from any number of addresses costs bounded
memory.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from typing import Any

import attrs

from ._errors import HttpError

#: Keys each limit's table holds at most.
KEPT = 100_000


class TokenBuckets:
    """
    One limit: a bucket of ``rate`` tokens per key, refilled at ``rate`` a
    second.

    :param rate: tokens a second, and the burst.
    :param clock: returns the time.
    :param kept: keys held at most.
    """

    def __init__(
        self, rate: float, clock: Callable[[], float], kept: int = KEPT
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._kept = kept
        # key -> (tokens, when counted)
        self._table: collections.OrderedDict[Any, tuple[float, float]] = (
            collections.OrderedDict()
        )

    def take(self, key: Any) -> float:
        """
        Take a token for ``key``: ``0.0`` when there was one, else the
        seconds until there is (nothing taken).
        """
        now = self._clock()
        table = self._table
        found = table.pop(key, None)
        rate = self.rate
        if found is None:
            tokens = rate
        else:
            tokens = min(rate, found[0] + (now - found[1]) * rate)
        if tokens >= 1.0:
            table[key] = (tokens - 1.0, now)
            wait = 0.0
        else:
            table[key] = (tokens, now)
            wait = (1.0 - tokens) / rate
        if len(table) > self._kept:
            table.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._table)


def too_many(what: str, wait: float) -> HttpError:
    """The ``429`` of a limit, with ``Retry-After`` (whole seconds, ≥ 1)."""
    return HttpError(
        429,
        f"Too many {what}; retry later",
        code="rate_limited",
        headers={"Retry-After": str(max(1, math.ceil(wait)))},
    )


@attrs.define
class RateLimits:
    """An app's limits (``None``: off)."""

    connections: TokenBuckets | None = None
    requests: TokenBuckets | None = None
    publishes: TokenBuckets | None = None

    @classmethod
    def from_settings(cls, settings: Any, clock: Callable[[], float]) -> RateLimits:
        def limit(rate: int | None) -> TokenBuckets | None:
            return None if not rate else TokenBuckets(rate, clock)

        return cls(
            limit(settings.rate_connections),
            limit(settings.rate_requests),
            limit(settings.rate_publishes),
        )
