# -*- test-case-name: tests.test_sse -*-
"""
The app's registry of open SSE streams (SPEC §6): ``app.streams``.

It admits new streams (``--max-streams``, shutdown), drives liveness for
all of them from one timer (heartbeats and the write deadline, SPEC §5.3),
and drains them on shutdown (SPEC §6.7). A stream leaves the registry the
moment it ends, and nothing here keeps it afterwards.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ._errors import HttpError
from ._eventstream import EventStream

#: ``Retry-After`` (seconds) on a ``503`` for a stream that was not admitted.
RETRY_AFTER = 5

#: Reconnection times (ms) given to clients on shutdown, drawn at random so
#: they do not all come back at once.
SHUTDOWN_RETRY_MS = (1000, 5000)


class StreamRegistry:
    """
    Every open SSE stream of one app (``app.streams``): ``len()``,
    iteration (over a snapshot, so streams may end meanwhile) and
    `count`.

    :param clock_of: returns the app's clock (resolved late).
    :param max_streams: the most streams open at once, or ``None``.
    :param write_timeout: seconds a stream may stay undrained.
    :param rng: draws the shutdown reconnection times.
    """

    _log = Logger()

    def __init__(
        self,
        clock_of: Callable[[], IReactorTime],
        *,
        max_streams: int | None,
        write_timeout: float,
        rng: random.Random | None = None,
    ) -> None:
        self._clock_of = clock_of
        self._max_streams = max_streams
        self._write_timeout = write_timeout
        self._rng = rng or random.Random()
        self._streams: dict[EventStream, None] = {}
        self._per_route: Counter[str] = Counter()
        self._timer: IDelayedCall | None = None
        self._interval = 0.0
        #: New streams are refused: the app is shutting down.
        self.draining = False
        # One bound method for every stream's end, not one per stream.
        self._end_callback = self.discard

    def __len__(self) -> int:
        return len(self._streams)

    def __iter__(self) -> Iterator[EventStream]:
        return iter(list(self._streams))

    def count(self, route: str | None = None) -> int:
        """Open streams, all or those of one route pattern (``"/chat/events"``)."""
        if route is None:
            return len(self._streams)
        return self._per_route[route]

    def __repr__(self) -> str:
        return f"<StreamRegistry {len(self)} open>"

    def _by_route(self) -> dict[str, int]:
        """Open streams per route pattern (for metrics)."""
        return dict(self._per_route)

    # Called by the response controller.

    def admit(self) -> None:
        """
        :raises HttpError: ``503`` with ``Retry-After`` while shutting down
            or at ``--max-streams``.
        """
        if self.draining:
            raise HttpError(
                503,
                "The server is shutting down",
                headers={"Retry-After": str(RETRY_AFTER)},
            )
        if self._max_streams is not None and len(self._streams) >= self._max_streams:
            raise HttpError(
                503,
                "Too many open streams",
                headers={"Retry-After": str(RETRY_AFTER)},
            )

    def add(self, stream: EventStream) -> None:
        """Hold ``stream`` until it ends."""
        self._streams[stream] = None
        stream._on_end(self._end_callback)
        self._per_route[stream.route] += 1
        interval = self._interval_for(stream.ping)
        if self._timer is None or interval < self._interval:
            self._schedule(interval)

    def discard(self, stream: EventStream) -> None:
        """Forget ``stream``."""
        if stream not in self._streams:
            return
        del self._streams[stream]
        route = stream.route
        self._per_route[route] -= 1
        if not self._per_route[route]:
            del self._per_route[route]
        if not self._streams and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # Liveness: one timer for every stream.

    def _interval_for(self, ping: float | None) -> float:
        # A tick every quarter period: a silent stream gets its heartbeat
        # between ping and 1.25 x ping after its last write.
        return min(ping or self._write_timeout, self._write_timeout) / 4

    def _schedule(self, interval: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._interval = interval
        self._timer = self._clock_of().callLater(interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        now = self._clock_of().seconds()
        shortest = None
        for stream in list(self._streams):
            stream._tick(now, self._write_timeout)
            if stream.ping is not None and (shortest is None or stream.ping < shortest):
                shortest = stream.ping
        if self._streams:
            self._schedule(self._interval_for(shortest))

    # Shutdown.

    def drain(self, grace: float) -> Deferred[None]:
        """
        Refuse new streams; give each open one a random ``retry`` (1–5 s)
        and close it; cut those still open after ``grace`` seconds. Fires
        once every stream has ended and its ``done`` callbacks have run.
        """
        self.draining = True
        streams = list(self._streams)
        if not streams:
            return succeed(None)
        ended = [stream.done for stream in streams]
        for stream in streams:
            stream._shut_down(self._rng.randint(*SHUTDOWN_RETRY_MS))
        cutoff = self._clock_of().callLater(grace, self._cut, streams)

        def finished(_: Any) -> None:
            if cutoff.active():
                cutoff.cancel()

        return gatherResults(ended).addCallback(finished)

    def _cut(self, streams: list[EventStream]) -> None:
        left = [s for s in streams if s in self._streams]
        if left:
            self._log.warn(
                "{count} SSE streams still open after the shutdown grace; cut",
                count=len(left),
            )
        for stream in left:
            stream._cut()
