# -*- test-case-name: tests.test_hub -*-
"""
What both hub backends share: the rules for channel names, idempotency keys
and presence info, the events a hub makes itself (``reset``, ``join``,
``leave``), this process's subscriptions, and the fan-out loop.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

from .._json import COMPACT_JSON
from .._requestid import new_request_id
from ..sse import encode_fields
from ._interface import ISubscriber

#: The event a subscriber gets when its ``Last-Event-ID`` cannot be resumed.
RESET_EVENT = "reset"
#: The ``Last-Event-ID`` that asks for everything a channel keeps.
EARLIEST = "earliest"
#: Seconds an idempotency key stays known on its channel.
IDEMPOTENCY_WINDOW = 300.0
#: Presence info, encoded as compact JSON, at most this many bytes.
MAX_PRESENCE_INFO = 1024
_MAX_CHANNEL = 256
_MAX_KEY = 256


@attrs.define
class HubStats:
    """Counters of a hub (``app.hub.stats()``)."""

    channels: int = 0
    subscribers: int = 0
    published: int = 0
    delivered: int = 0
    dropped: int = 0
    replayed: int = 0
    resets: int = 0
    #: Publishes answered with an earlier id (same idempotency key).
    duplicates: int = 0
    #: Holes in the live sequence a process noticed and caught up on.
    gaps: int = 0
    #: Streams present on channels in this process (a stream on two
    #: channels counts twice).
    present: int = 0
    #: Times a stream fell behind past its budget and was caught up from
    #: history ("lag").
    lagged: int = 0
    #: Bytes received from the backend's server (Redis): what following
    #: only the channels served here saves shows here.
    received: int = 0


def check_channel(name: Any) -> None:
    """
    :raises TypeError: for a channel name that is not a ``str``.
    :raises ValueError: for one that is empty, too long, or holds CR, LF
        or NUL.
    """
    if not isinstance(name, str):
        raise TypeError(f"a channel name is a str, not {type(name).__name__}")
    if (
        not 0 < len(name) <= _MAX_CHANNEL
        or "\r" in name
        or "\n" in name
        or ("\x00" in name)
    ):
        raise ValueError(
            f"a channel name has 1 to {_MAX_CHANNEL} characters and no CR, LF "
            f"or NUL: {name!r}"
        )


def channel_names(channels: Iterable[str]) -> list[str]:
    """``channels`` checked (`check_channel`), each once, in order."""
    if isinstance(channels, str):
        raise TypeError("channels is a list of names, not one str")
    names = list(dict.fromkeys(channels))
    for name in names:
        check_channel(name)
    return names


def check_idempotency_key(key: Any) -> None:
    """
    :raises TypeError: for a key that is not a ``str``.
    :raises ValueError: for an empty one or one over 256 characters.
    """
    if not isinstance(key, str):
        raise TypeError(f"an idempotency key is a str, not {type(key).__name__}")
    if not 0 < len(key) <= _MAX_KEY:
        raise ValueError(f"an idempotency key has 1 to {_MAX_KEY} characters")


def check_history(history: Any) -> int:
    """:raises ValueError: unless ``history`` is a whole number ≥ 0."""
    if isinstance(history, bool) or not isinstance(history, int) or history < 0:
        raise ValueError(f"history is a number of events >= 0, not {history!r}")
    return history


def presence_json(info: Any) -> str:
    """
    ``info`` as compact JSON.

    :raises TypeError: when it is not JSON-able.
    :raises ValueError: when it encodes to more than `MAX_PRESENCE_INFO`
        bytes.
    """
    text = COMPACT_JSON.encode(info)
    if len(text.encode("utf-8")) > MAX_PRESENCE_INFO:
        raise ValueError(f"presence info is at most {MAX_PRESENCE_INFO} bytes of JSON")
    return text


def decode_presence(present: dict[str, str]) -> dict[str, Any]:
    """Presence info kept as JSON, decoded for the caller."""
    return {sid: json.loads(info) for sid, info in present.items()}


def reset_wire(channel: str, last_event_id: str) -> bytes:
    """The ``reset`` event telling a subscriber it missed events of ``channel``."""
    return encode_fields(
        {"channel": channel, "last_event_id": last_event_id}, RESET_EVENT
    )


def presence_wire(kind: str, channel: str, subscriber_id: str, info: str) -> bytes:
    """A ``join`` or ``leave`` event (no id: it is not kept in history)."""
    data = (
        f'{{"channel":{COMPACT_JSON.encode(channel)},'
        f'"id":{COMPACT_JSON.encode(subscriber_id)},"info":{info}}}'
    )
    return encode_fields(data, kind)


def fan_out(subscribers: Iterable[ISubscriber], wire: bytes, stats: HubStats) -> None:
    """Hand ``wire`` to each subscriber, under its own slow-consumer policy."""
    # A snapshot: a delivery may end a stream, which unsubscribes it.
    targets = list(subscribers)
    delivered = 0
    for subscriber in targets:
        if subscriber._deliver(wire):
            delivered += 1
    stats.delivered += delivered
    stats.dropped += len(targets) - delivered


#: No subscribers (shared, never changed).
_NONE: dict[Any, None] = {}


@attrs.define(eq=False)
class Presence:
    """One stream's presence: its id, its info, whether others hear of it."""

    id: str
    info: str
    events: bool
    channels: list[str] = attrs.Factory(list)

    #: channel -> (join, leave) events, made once.
    _wires: dict[str, tuple[bytes, bytes]] = attrs.Factory(dict)

    def join(self, channel: str) -> bytes | None:
        return self._events(channel)[0] if self.events else None

    def leave(self, channel: str) -> bytes | None:
        return self._events(channel)[1] if self.events else None

    def _events(self, channel: str) -> tuple[bytes, bytes]:
        wires = self._wires.get(channel)
        if wires is None:
            wires = self._wires[channel] = (
                presence_wire("join", channel, self.id, self.info),
                presence_wire("leave", channel, self.id, self.info),
            )
        return wires


class Locals:
    """
    This process's subscriptions: the streams of each channel, the channels
    of each stream, who is present where. A stream is forgotten when it ends
    (`on_end` is called with it and what it had).
    """

    __slots__ = (
        "_by_channel",
        "_by_stream",
        "_presence",
        "_on_end",
        "_stats",
        "_end_callback",
    )

    def __init__(
        self,
        stats: HubStats,
        on_end: Callable[[ISubscriber, list[str], Presence | None], None],
    ) -> None:
        self._by_channel: dict[str, dict[ISubscriber, None]] = {}
        self._by_stream: dict[ISubscriber, list[str]] = {}
        self._presence: dict[ISubscriber, Presence] = {}
        self._on_end = on_end
        self._stats = stats
        # One bound method for every stream's end, not one per stream.
        self._end_callback = self._ended

    def __len__(self) -> int:
        return len(self._by_channel)

    def channels(self) -> Iterator[str]:
        """The channels with a subscriber here."""
        return iter(self._by_channel)

    def streams(self) -> Iterator[ISubscriber]:
        """The subscribed streams."""
        return iter(self._by_stream)

    def of(self, channel: str) -> dict[ISubscriber, None]:
        """The streams subscribed to ``channel`` here (do not change it)."""
        return self._by_channel.get(channel, _NONE)

    def channels_of(self, stream: ISubscriber) -> list[str]:
        return self._by_stream.get(stream, [])

    def add(
        self,
        stream: ISubscriber,
        names: list[str],
        presence: tuple[str, bool] | None = None,
    ) -> tuple[list[str], Presence | None]:
        """
        Subscribe ``stream`` to those of ``names`` it does not have yet.

        :param presence: ``(info as JSON, presence_events)`` to be present
            on the new channels.
        :return: the new channels, and the stream's presence (``None`` if
            it has none).
        """
        own = self._by_stream.get(stream)
        if own is None:
            own = self._by_stream[stream] = []
            stream._on_end(self._end_callback)
        new = [name for name in names if name not in own]
        for name in new:
            self._by_channel.setdefault(name, {})[stream] = None
            own.append(name)
        self._stats.subscribers += len(new)
        mine = self._presence.get(stream)
        if presence is not None and new:
            if mine is None:
                info, events = presence
                mine = self._presence[stream] = Presence(new_request_id(), info, events)
            mine.channels.extend(new)
            self._stats.present += len(new)
        return new, mine

    def admit(
        self,
        stream: ISubscriber,
        channels: Iterable[str],
        history: Any,
        presence: Any,
        presence_events: bool,
    ) -> tuple[list[str], Presence | None]:
        """
        A subscribe's arguments checked, then `add`: the new channels and
        the stream's presence (nothing for a stream already closed).

        :raises ValueError, TypeError: for a bad channel name, ``history``
            or presence info.
        """
        names = channel_names(channels)
        check_history(history)
        info = None if presence is None else presence_json(presence)
        if stream.closed:
            return [], None
        new, mine = self.add(
            stream, names, None if info is None else (info, presence_events)
        )
        return new, (mine if info is not None else None)

    def remove(
        self, stream: ISubscriber, names: Iterable[str]
    ) -> tuple[list[str], Presence | None, list[str]]:
        """
        Unsubscribe ``stream`` from those of ``names`` it has: the channels
        removed, its presence (``None`` if it has none) and the channels it
        is no longer present on.
        """
        own = self._by_stream.get(stream)
        if own is None:
            return [], None, []
        gone = [name for name in dict.fromkeys(names) if name in own]
        for name in gone:
            own.remove(name)
            subscribers = self._by_channel[name]
            del subscribers[stream]
            if not subscribers:
                del self._by_channel[name]
        self._stats.subscribers -= len(gone)
        presence = self._presence.get(stream)
        left: list[str] = []
        if presence is not None:
            left = [name for name in gone if name in presence.channels]
            for name in left:
                presence.channels.remove(name)
            self._stats.present -= len(left)
        return gone, presence, left

    def present(self, channel: str) -> dict[str, str]:
        """``{subscriber id: info as JSON}`` of the streams present here."""
        return {
            p.id: p.info
            for stream in self.of(channel)
            if (p := self._presence.get(stream)) is not None and channel in p.channels
        }

    def presences(self) -> Iterator[Presence]:
        return iter(self._presence.values())

    def _ended(self, stream: ISubscriber) -> None:
        names = self._by_stream.pop(stream, [])
        for name in names:
            subscribers = self._by_channel[name]
            del subscribers[stream]
            if not subscribers:
                del self._by_channel[name]
        self._stats.subscribers -= len(names)
        presence = self._presence.pop(stream, None)
        if presence is not None:
            self._stats.present -= len(presence.channels)
        self._on_end(stream, names, presence)
