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
    ) -> None:
        """
        Deliver ``channels`` to ``stream`` (an `ISubscriber`) until it ends:
        first what ``last_event_id`` says it missed (or a ``reset``), or
        without one the last ``history`` events of each channel, then every
        live event. With ``presence`` (JSON-able info), the stream is
        present on those channels while it is open.
        """

    def presence(channel: str) -> Any:
        """A Deferred of ``{subscriber_id: info}`` of every process."""

    def stats() -> Any:
        """A snapshot of the counters (`HubStats`)."""

    def start() -> None:
        """Get ready (connect); publishing and subscribing do it too."""

    def stop() -> Any:
        """A Deferred firing once the hub has let go of its resources."""
