# -*- test-case-name: tests.test_hub -*-
"""
The in-process backend (``--hub memory``, the default; SPEC §11): each
channel's epoch, sequence and bounded history in this process's memory.
Appends, reads and live events are synchronous (a publish reaches every
subscriber before ``publish`` returns), so this backend never loses a live
event and the hub core never has a gap to fill here.

A channel's history gives way to ``--hub-history`` events, ``--hub-history-
bytes`` and ``--hub-history-age`` seconds. A channel nobody follows whose
last event is over twice the age old is forgotten (its epoch with it: a
later publish starts a new epoch, and an id of the old one gets ``reset``),
so per-user channels cannot pile up.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from .._config import HUB_HISTORY, HUB_HISTORY_AGE, HUB_HISTORY_BYTES, HUB_PRESENCE_TTL
from ._channels import IDEMPOTENCY_WINDOW
from ._core import Hub, Range
from ._ids import Position, new_epoch
from ._interface import IBackend

__all__ = ("MAX_IDEMPOTENCY_KEYS", "MemoryBackend", "MemoryHub")

#: The most idempotency keys remembered at once; past it the oldest are
#: forgotten before their window ends.
MAX_IDEMPOTENCY_KEYS = 100_000


class _Channel:
    """A channel: its epoch, its last ``n``, and what it keeps."""

    __slots__ = ("epoch", "n", "history", "bytes", "last")

    def __init__(self) -> None:
        self.epoch = new_epoch()
        self.n = 0
        #: ``(n, body, time)``, oldest first.
        self.history: collections.deque[tuple[int, bytes, float]] = collections.deque()
        self.bytes = 0
        #: When its last event was published (or it was made).
        self.last = 0.0

    def head(self) -> Position:
        return Position(self.epoch, self.n)

    def first(self) -> int:
        """The ``n`` of its oldest kept event (``n + 1`` when none is kept)."""
        return self.history[0][0] if self.history else self.n + 1


@implementer(IBackend)
class MemoryBackend:
    """
    Channels in this process (see the module docstring).

    :param clock: returns the ``IReactorTime`` (resolved late).
    """

    _log = Logger()
    description = "memory"
    #: Bytes received from a server: none.
    received = 0

    def __init__(
        self,
        clock: Callable[[], IReactorTime],
        *,
        history: int = HUB_HISTORY,
        history_bytes: int = HUB_HISTORY_BYTES,
        history_age: float = HUB_HISTORY_AGE,
    ) -> None:
        self.sink: Any = None
        self._clock = clock
        self._history = history
        self._history_bytes = history_bytes
        self._history_age = history_age
        self._channels: dict[str, _Channel] = {}
        self._followed: set[str] = set()
        # (channel, key) -> (position, when first used), oldest first.
        self._keys: collections.OrderedDict[tuple[str, str], tuple[Position, float]] = (
            collections.OrderedDict()
        )
        self._present: dict[str, dict[str, str]] = {}
        self._sweep: IDelayedCall | None = None
        # (channel, name) -> (value, when it expires).
        self._records: dict[tuple[str, str], tuple[str, float]] = {}

    def start(self) -> None:
        """Nothing to connect to."""

    def stop(self) -> Deferred[None]:
        """Stop the sweep; history stays (a restarted app keeps it)."""
        if self._sweep is not None and self._sweep.active():
            self._sweep.cancel()
        self._sweep = None
        return succeed(None)

    def append(
        self, channel: str, body: bytes, idempotency_key: str | None
    ) -> Deferred[tuple[Position, bool]]:
        now = self._clock().seconds()
        if idempotency_key is not None:
            earlier = self._earlier(channel, idempotency_key, now)
            if earlier is not None:
                return succeed((earlier, True))
        target = self._channel(channel, now)
        self._evict(target, now)
        target.n += 1
        target.last = now
        target.history.append((target.n, body, now))
        target.bytes += len(body)
        self._evict(target, now)
        position = target.head()
        if idempotency_key is not None:
            self._keys[channel, idempotency_key] = (position, now)
        self._schedule_sweep()
        if channel in self._followed:
            self.sink.event(channel, position, body)
        return succeed((position, False))

    def read(
        self,
        channel: str,
        mode: str,
        after: Position | None = None,
        count: int = 0,
        last: bytes | None = None,
    ) -> Deferred[Range]:
        # (``last`` is not checked: in one process nothing is lost in a
        # failover, nothing numbered twice.)
        now = self._clock().seconds()
        target = self._channel(channel, now)
        self._evict(target, now)
        head = target.head()
        history = target.history
        if mode == "head":
            return succeed(Range(head))
        reset = False
        if mode == "since":
            if after is not None and after.epoch != head.epoch:
                reset, mode = True, "earliest"
            else:
                mode = "after"
        if mode == "tail":
            kept = list(history)[-count:] if count else []
        elif mode == "earliest":
            kept = list(history)
        else:
            assert after is not None
            if after.epoch != head.epoch or after.n > head.n:
                return succeed(Range(head, reset=True))
            if after.n + 1 < target.first():
                return succeed(Range(head, reset=True))
            kept = [entry for entry in history if entry[0] > after.n]
        events = [(n, body) for n, body, _ in kept]
        return succeed(Range(head, reset=reset, events=events))

    def follow(self, channel: str) -> Deferred[None]:
        self._followed.add(channel)
        return succeed(None)

    def unfollow(self, channel: str) -> None:
        self._followed.discard(channel)

    def announce(self, channel: str, wire: bytes) -> Deferred[None]:
        if channel in self._followed:
            self.sink.announced(channel, wire)
        return succeed(None)

    def lease(
        self, channel: str, entries: list[tuple[str, str, bytes, bytes]], ttl: float
    ) -> Deferred[None]:
        # A process's streams leave with it: no lease runs out here.
        present = self._present.setdefault(channel, {})
        for presence_id, info, join, _ in entries:
            if presence_id not in present:
                present[presence_id] = info
                if join:
                    self.announce(channel, join)
        return succeed(None)

    def release(self, channel: str, presence_id: str, leave: bytes) -> Deferred[None]:
        present = self._present.get(channel)
        if present is not None and present.pop(presence_id, None) is not None:
            if not present:
                del self._present[channel]
            if leave:
                self.announce(channel, leave)
        return succeed(None)

    def present(self, channel: str) -> Deferred[dict[str, str]]:
        return succeed(dict(self._present.get(channel, {})))

    def present_count(self, channel: str) -> Deferred[int]:
        return succeed(len(self._present.get(channel, ())))

    def fetch(self, channel: str, name: str) -> Deferred[str | None]:
        return succeed(self._record(channel, name))

    def claim(
        self, channel: str, name: str, value: str, ttl: float
    ) -> Deferred[str | None]:
        held = self._record(channel, name)
        if held is not None:
            return succeed(held)
        self._records[channel, name] = (value, self._clock().seconds() + ttl)
        return succeed(None)

    def swap(
        self, channel: str, name: str, expected: str, value: str, ttl: float
    ) -> Deferred[bool]:
        if self._record(channel, name) != expected:
            return succeed(False)
        self._records[channel, name] = (value, self._clock().seconds() + ttl)
        return succeed(True)

    def _record(self, channel: str, name: str) -> str | None:
        held = self._records.get((channel, name))
        if held is None:
            return None
        if held[1] <= self._clock().seconds():
            del self._records[channel, name]
            return None
        return held[0]

    # Internals.

    def _channel(self, name: str, now: float) -> _Channel:
        target = self._channels.get(name)
        if target is None:
            target = self._channels[name] = _Channel()
            target.last = now
            self._schedule_sweep()
        return target

    def _earlier(self, channel: str, key: str, now: float) -> Position | None:
        keys = self._keys
        horizon = now - IDEMPOTENCY_WINDOW
        while keys:
            oldest = next(iter(keys.values()))
            if oldest[1] > horizon and len(keys) < MAX_IDEMPOTENCY_KEYS:
                break
            keys.popitem(last=False)
        known = keys.get((channel, key))
        return None if known is None else known[0]

    def _evict(self, target: _Channel, now: float) -> None:
        history = target.history
        oldest = now - self._history_age
        while history and (
            len(history) > self._history
            or target.bytes > self._history_bytes
            or history[0][2] <= oldest
        ):
            _, body, _ = history.popleft()
            target.bytes -= len(body)

    def _schedule_sweep(self) -> None:
        """One timer ages out the history of channels nobody publishes on."""
        if self._sweep is None or not self._sweep.active():
            self._sweep = self._clock().callLater(
                max(self._history_age / 10, 1.0), self._run_sweep
            )

    def _run_sweep(self) -> None:
        self._sweep = None
        now = self._clock().seconds()
        forget = now - 2 * self._history_age
        for name, target in list(self._channels.items()):
            self._evict(target, now)
            if (
                not target.history
                and target.last <= forget
                and name not in self._followed
            ):
                del self._channels[name]
        if self._channels:
            self._schedule_sweep()


class MemoryHub(Hub):
    """
    The hub with its channels in this process (``--hub memory``).

    :param clock: returns the ``IReactorTime`` (resolved late).
    :param history: events kept per channel.
    :param history_bytes: encoded bytes kept per channel.
    :param history_age: seconds an event stays in its channel's history.
    :param presence_ttl: unused here (a process's streams leave with it).
    """

    def __init__(
        self,
        clock: Callable[[], IReactorTime],
        *,
        history: int = HUB_HISTORY,
        history_bytes: int = HUB_HISTORY_BYTES,
        history_age: float = HUB_HISTORY_AGE,
        presence_ttl: float = HUB_PRESENCE_TTL,
    ) -> None:
        backend = MemoryBackend(
            clock,
            history=history,
            history_bytes=history_bytes,
            history_age=history_age,
        )
        super().__init__(backend, clock, history=history, presence_ttl=presence_ttl)
