# -*- test-case-name: tests.test_deadlines -*-
"""
Many deadlines on one timer.

A connection passes through phases (a TLS handshake, waiting for a first
request, a request head, keep-alive...) each with its own deadline, and a
server accepts thousands of connections a second: a timer per connection
per phase would cost a heap operation on the reactor for every phase of
every connection. Owners may leave a kind without `Deadlines.cancel`
(cheaper on a hot path) if they ignore a deadline passing for a kind they
are no longer in. Within one kind of deadline the timeout is fixed, so
deadlines of that kind fall due in the order they were set: a FIFO queue
per kind holds them, and one timer, set for the earliest deadline at the
front of any queue, serves them all. Setting, moving on (``restart``: the
body made progress) and cancelling a deadline are O(1), without touching
the reactor's timer heap.

The queues also answer "who has waited longest" (`Deadlines.oldest`), which
is how a full server picks the connection to evict.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ("Deadlines", "Expiring")

#: A deadline's kind (for a connection: its phase).
K = TypeVar("K", bound=Hashable)

#: A timer set this little later than the earliest deadline still serves
#: it: deadlines set in a burst share one timer instead of moving it.
_TOLERANCE = 0.05


class Expiring(Protocol[K]):  # type: ignore[misc]
    """What a deadline belongs to."""

    def deadline_passed(self, kind: K) -> None:
        """The deadline of ``kind`` set for this owner has passed."""


class Deadlines(Generic[K]):
    """
    Deadlines of many owners on one timer of ``clock``; ``timeouts`` gives
    the seconds each kind allows. An owner has at most one deadline of each
    kind (setting it again moves it).
    """

    __slots__ = ("_clock", "_timeouts", "_queues", "_call", "_due")

    def __init__(self, clock: IReactorTime, timeouts: Mapping[K, float]) -> None:
        self._clock = clock
        self._timeouts = dict(timeouts)
        self._queues: dict[K, OrderedDict[Any, float]] = {
            kind: OrderedDict() for kind in timeouts
        }
        self._call: IDelayedCall | None = None
        self._due = 0.0

    def timeout(self, kind: K) -> float:
        """The seconds a deadline of ``kind`` allows."""
        return self._timeouts[kind]

    def start(self, owner: Expiring[K], kind: K) -> None:
        """
        ``owner``'s deadline of ``kind`` is its timeout from now (restarted
        if it had one).
        """
        queue = self._queues[kind]
        due = self._clock.seconds() + self._timeouts[kind]
        if owner in queue:
            queue.move_to_end(owner)
        queue[owner] = due
        # ``_call`` is set only while active: most deadlines fall after the
        # timer's, which then serves them too.
        if self._call is None or due < self._due - _TOLERANCE:
            self._arm(due)

    restart = start

    def cancel(self, owner: Expiring[K], kind: K) -> None:
        """``owner`` no longer has a deadline of ``kind`` (none: a no-op)."""
        self._queues[kind].pop(owner, None)

    def pending(self, owner: Expiring[K], kind: K) -> bool:
        """Whether ``owner`` has a deadline of ``kind``."""
        return owner in self._queues[kind]

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def oldest(self, kinds: Iterable[K]) -> tuple[Any, K] | None:
        """
        The owner whose deadline of one of ``kinds`` was set the longest ago,
        and that kind; ``None`` if none has one. Its deadline is not touched
        (an owner that left the kind without `cancel` is still listed: the
        caller checks).
        """
        best: tuple[Any, K] | None = None
        since = 0.0
        for kind in kinds:
            queue = self._queues[kind]
            if not queue:
                continue
            owner = next(iter(queue))
            started = queue[owner] - self._timeouts[kind]
            if best is None or started < since:
                best, since = (owner, kind), started
        return best

    def stop(self) -> None:
        """Forget every deadline and the timer."""
        for queue in self._queues.values():
            queue.clear()
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _arm(self, due: float) -> None:
        call = self._call
        self._due = due
        if call is None:
            self._call = self._clock.callLater(
                max(0.0, due - self._clock.seconds()), self._fire
            )
        else:
            call.reset(max(0.0, due - self._clock.seconds()))

    def _fire(self) -> None:
        self._call = None
        now = self._clock.seconds()
        passed: list[tuple[Any, K]] = []
        following: float | None = None
        for kind, queue in self._queues.items():
            while queue:
                owner = next(iter(queue))
                due = queue[owner]
                if due > now:
                    if following is None or due < following:
                        following = due
                    break
                del queue[owner]
                passed.append((owner, kind))
        if following is not None:
            self._arm(following)
        # After the queues are settled: an owner may set a new deadline.
        for owner, kind in passed:
            owner.deadline_passed(kind)
