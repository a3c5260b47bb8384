# -*- test-case-name: tests.test_hub_interface -*-
"""
`IHub`: what every hub backend provides (SPEC §11), and `ISubscriber`: what
a hub needs of a stream it delivers to. The app, the context and the
response controller know a hub only through `IHub`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from zope.interface import Attribute, Interface


class ISubscriber(Interface):
    """
    What a hub delivers to (an `EventStream`). A hub never waits for a
    subscriber: it hands it encoded bytes and learns at once whether they
    were taken.
    """

    closed = Attribute("Whether the subscriber takes no more events.")
    request_id = Attribute("The id of the request it answers, for logs.")
    lags = Attribute(
        "Whether an event over its budget makes it lag (caught up from "
        "history once drained) rather than apply its own policy."
    )

    def _offer(payload: bytes) -> bool:
        """
        Take encoded event bytes if they fit its budget; ``False`` if not
        (then a subscriber that does not lag applies its own policy).
        """

    def _when_drained(callback: Callable[[], None]) -> None:
        """Call ``callback`` later, once what it holds has gone to the network."""

    def _deliver(payload: bytes) -> bool:
        """Take already encoded event bytes; ``False`` when refused."""

    def _cut(reason: str) -> None:
        """Drop the connection now (it cannot be caught up)."""

    def _on_end(callback: Callable[[Any], None]) -> None:
        """
        Call ``callback(subscriber)`` once when the subscriber ends, before
        its ``done`` fires (at once if it has ended).
        """


class IHub(Interface):
    """
    Named channels with history (``ctx.hub``, ``app.hub``). Every backend
    keeps the same rules: ids unique and increasing within a channel,
    delivery in publication order, exact resume or one ``reset`` event,
    an epoch in every id, idempotent publish, presence.
    """

    def publish(
        channel: str,
        data: Any,
        event: str | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """
        Publish an event on ``channel``: a Deferred firing with its id. With
        an ``idempotency_key`` already used on that channel within
        `IDEMPOTENCY_WINDOW` seconds, nothing is published and the Deferred
        fires with the first publish's id.
        """

    def subscribe(
        stream: ISubscriber,
        channels: Iterable[str],
        last_event_id: str | None = None,
        history: int = 0,
        presence: Any = None,
        presence_events: bool = False,
    ) -> Any:
        """
        Deliver ``channels`` to ``stream`` (an `ISubscriber`) until it ends:
        first what ``last_event_id`` says it missed (or a ``reset``), or
        without one the last ``history`` events of each channel, then every
        live event. With ``presence`` (JSON-able info), the stream is
        present on those channels while it is open. Returns a Deferred
        firing once the stream takes the channels' live events (or ended).
        """

    def unsubscribe(stream: ISubscriber, channels: Any) -> bool:
        """
        Stop delivering ``channels`` to ``stream``, which keeps its others;
        ``False`` (nothing done) while it is not yet taking live events.
        """

    def presence(channel: str) -> Any:
        """A Deferred of ``{subscriber_id: info}`` of every process."""

    def presence_count(channel: str) -> Any:
        """A Deferred of how many are present on ``channel``, in every process."""

    backend = Attribute(
        "Where its channels live (`IBackend`), with records beside them."
    )

    def stats() -> Any:
        """A snapshot of the counters (`HubStats`)."""

    def start() -> None:
        """Get ready (connect); publishing and subscribing do it too."""

    def stop() -> Any:
        """A Deferred firing once the hub has let go of its resources."""


class IFeedSink(Interface):
    """What a backend tells the hub core about the channels it follows."""

    def event(channel: str, position: Any, body: bytes) -> None:
        """
        An event published on ``channel`` at ``position`` (an
        `oxian_tw.hub._ids.Position`), ``body`` its encoded lines without
        the ``id:`` line. Per channel in publication order; one may be lost
        (the core notices from the positions).
        """

    def announced(channel: str, wire: bytes) -> None:
        """A presence event (``join``/``leave``, no id) on ``channel``."""

    def lost(channels: Any = None) -> None:
        """
        Live events may have been lost on ``channels`` (an iterable; ``None``:
        every followed channel), after a reconnection or a Cluster's slot
        moving: the core follows them again and catches up.
        """


class IBackend(Interface):
    """
    Where a hub's channels live (memory, Redis, Redis Cluster): appending,
    reading a channel's kept history, following its live events,
    presence leases and idempotency records. The hub's own logic (fan-out,
    resume, gaps, presence bookkeeping) is `oxian_tw.hub._core.Hub`'s,
    written once; a backend is the storage and transport under it.
    """

    sink = Attribute("The `IFeedSink` live events go to (set by the core).")
    description = Attribute("Where it is, for the log (no credentials).")
    received = Attribute("Bytes received from its server(s) (0 in memory).")

    def start() -> None:
        """Get ready (connect)."""

    def stop() -> Any:
        """A Deferred firing once the backend let go of its resources."""

    def append(channel: str, body: bytes, idempotency_key: str | None) -> Any:
        """
        Keep ``body`` as the channel's next event and send it to every
        process following the channel: a Deferred of ``(Position, earlier)``,
        ``earlier`` true when the idempotency key was used on the channel
        within `IDEMPOTENCY_WINDOW` (nothing was appended; the position is
        the first publish's). Fails with `HubUnavailable` (nothing sent) or
        `HubTimeout` (sent, unconfirmed).
        """

    def read(
        channel: str, mode: str, after: Any = None, count: int = 0, last: Any = None
    ) -> Any:
        """
        A Deferred of a `Range`: the channel's head and what it keeps,
        ``mode`` ``"head"`` (no events), ``"after"`` (the events after the
        `Position` ``after``, or a reset when it cannot be resumed),
        ``"since"`` (``"after"``, but on another epoch a reset with
        everything the new epoch kept: for a process that was live up to
        ``after``), ``"earliest"`` (everything kept) or ``"tail"`` (the
        last ``count``). A channel that has no epoch yet gets one.
        ``last``, for ``"since"``: the body of the event at ``after`` as
        this process delivered it; a backend that can lose acknowledged
        events (Redis failing over to a replica) compares it and, when the
        channel holds another event there (or went back before it), gives
        the channel a new epoch and answers a reset.
        """

    def follow(channel: str) -> Any:
        """
        Start sending the channel's live events to `sink`: a Deferred that
        fires once every event published from now on will be sent.
        """

    def unfollow(channel: str) -> None:
        """Stop sending the channel's live events."""

    def announce(channel: str, wire: bytes) -> Any:
        """Send a presence event to every process following ``channel``."""

    def lease(channel: str, entries: Any, ttl: float) -> Any:
        """
        Be present on ``channel`` for ``ttl`` seconds more: ``entries`` are
        ``(presence id, info as JSON, join wire or b"", leave wire or
        b"")``; a new member's join is announced; a member whose lease ran
        out is dropped (its leave announced).
        """

    def release(channel: str, presence_id: str, leave: bytes) -> Any:
        """Leave ``channel`` now (``leave`` announced when not empty)."""

    def present(channel: str) -> Any:
        """A Deferred of ``{presence id: info as JSON}`` on ``channel``."""

    def present_count(channel: str) -> Any:
        """A Deferred of how many are present on ``channel``, not reading them."""

    def fetch(channel: str, name: str) -> Any:
        """
        A Deferred of the record ``name`` kept beside ``channel`` (a
        ``str``), or ``None`` when there is none (never set, or expired).
        Records are small values shared by every process (a run's state
        and lease, `oxian_tw._runs`).
        """

    def claim(channel: str, name: str, value: str, ttl: float) -> Any:
        """
        Set the record ``name`` to ``value`` for ``ttl`` seconds unless it
        exists, atomically across processes: a Deferred of ``None`` when
        set, else of the record's value.
        """

    def swap(channel: str, name: str, expected: str, value: str, ttl: float) -> Any:
        """
        Set the record ``name`` to ``value`` for ``ttl`` seconds if it is
        ``expected``, atomically: a Deferred of whether it was set.
        """
