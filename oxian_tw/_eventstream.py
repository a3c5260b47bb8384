# -*- test-case-name: tests.test_sse -*-
"""
`EventStream`: what ``ctx.response.sse()`` returns (SPEC §5).

An event stream is a `Stream` whose chunks are encoded events. It adds what
a long-lived, mostly idle response needs: a byte budget with a policy for
clients that fall behind, heartbeats and a write deadline (both driven by
the registry's one timer, see `oxian_tw._registry`), and a ``done`` whose
callbacks never run inside ``send``, ``comment`` or ``close``, so a loop
over a set of clients never sees the set change under it.

Events are coalesced like every stream's writes: those sent to one client
in one reactor turn leave together (`oxian_tw._producer`).
"""

from __future__ import annotations

from collections.abc import Callable
from operator import is_
from types import NoneType
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from ._producer import _OPEN, Stream
from .hub._interface import ISubscriber
from .sse import Comment, encode, encode_fields, encode_retry

#: Subscribes a stream to channels: the app's hub's ``subscribe``.
Subscribe = Callable[..., Deferred[None]]


class Subscribes(Protocol):
    """What a stream subscribes through: a hub (or a checked one)."""

    @property
    def subscribe(self) -> Subscribe:
        """Subscribe a stream to channels (`oxian_tw.hub.IHub.subscribe`)."""


_EndCallbacks = (
    Callable[["EventStream"], None]
    | list[Callable[["EventStream"], None]]
    | tuple[()]
    | None
)

#: What `EventStream` does with an event that would pass its budget: for
#: hub events, ``"lag"`` (stop taking live events and be caught up from
#: history once the socket drained) or ``"disconnect"``; for events sent
#: with ``send()``, ``"disconnect"`` or ``"drop"`` (discard and count).
SLOW_CONSUMER_POLICIES = ("disconnect", "drop", "lag")


class _DefaultPolicy:
    """
    ``slow_consumer`` left out: ``"lag"`` for hub events, ``"disconnect"``
    for the rest (SPEC §5.5), told apart from a policy chosen explicitly.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "DEFAULT_POLICY"

    def __str__(self) -> str:
        return "lag (hub events), disconnect (others)"


#: The default ``slow_consumer``.
DEFAULT_POLICY: Any = _DefaultPolicy()

HEARTBEAT = b":\n"

_FIRED: tuple[()] = ()

_NOTHING = object()

# Values whose encoding cannot change while the same object stays in place.
_SCALARS = frozenset({str, int, float, bool, NoneType})


class _LastEvent:
    """
    The wire bytes of the last event sent with a flat ``dict`` of scalars
    as its data, and what they were made from.

    The seed's broadcast (``for client in clients: client.sse.send(message)``)
    sends one dict to every client in a row; encoding it once instead of
    per client is most of the cost of the loop. The bytes are reused only
    when they are exact: the same dict object, holding the very same key
    and value objects in the same order (compared by identity, so ``1`` and
    ``True`` or ``0.0`` and ``-0.0`` never pass for each other), every value
    an immutable scalar (nothing nested that could have changed), and the
    same ``event``, ``id`` and ``retry``.
    """

    __slots__ = ("data", "keys", "values", "event", "id", "retry", "wire")

    def __init__(self) -> None:
        self.data: Any = _NOTHING
        self.keys: tuple[Any, ...] = ()
        self.values: tuple[Any, ...] = ()
        self.event: str | None = None
        self.id: str | None = None
        self.retry: int | None = None
        self.wire = b""

    def encode(
        self, data: Any, event: str | None, id: str | None, retry: int | None
    ) -> bytes:
        """`oxian_tw.sse.encode_fields`, reusing the last bytes when exact."""
        if (
            data is self.data
            and event is self.event
            and id is self.id
            and retry is self.retry
            and len(data) == len(self.keys)
            and all(map(is_, data, self.keys))
            and all(map(is_, data.values(), self.values))
        ):
            return self.wire
        wire = encode_fields(data, event, id, retry)
        if type(data) is dict and all(type(v) in _SCALARS for v in data.values()):
            self.data = data
            self.keys = tuple(data)
            self.values = tuple(data.values())
            self.event, self.id, self.retry = event, id, retry
            self.wire = wire
        return wire


_last_event = _LastEvent()


class _SseCounters:
    """What SSE streams of this process did, for ``oxian_tw.metrics``."""

    __slots__ = ("kicked", "dropped", "stuck", "heartbeats")

    def __init__(self) -> None:
        self.kicked = 0
        self.dropped = 0
        self.stuck = 0
        self.heartbeats = 0


#: Process-wide: kicks, drops, stuck closes and heartbeats of every stream.
SSE_COUNTERS = _SseCounters()


@implementer(ISubscriber)
class EventStream:
    """
    An open Server-Sent Events response (``sse = ctx.response.sse()``).

    :ivar route: the route pattern that opened it (``"/chat/events"``).
    :ivar request_id: the request's id.
    :ivar last_event_id: the client's ``Last-Event-ID`` header, else its
        ``lastEventId`` query parameter, else ``None``.
    :ivar ping: seconds of silence before a heartbeat, or ``None``.
    :ivar slow_consumer: ``"disconnect"``, ``"drop"``, ``"lag"`` or
        `DEFAULT_POLICY` (lag for hub events, disconnect for others).
    :ivar dropped: events discarded under ``"drop"``.
    """

    _log = Logger()
    __slots__ = (
        "route",
        "request_id",
        "last_event_id",
        "ping",
        "slow_consumer",
        "dropped",
        "_stream",
        "_clock",
        "_subscribe_to",
        "_end_callbacks",
        "_budget",
        "_stalled",
        "_done",
        "__weakref__",
    )

    def __init__(
        self,
        stream: Stream,
        *,
        clock: IReactorTime,
        subscribe_to: Subscribes,
        route: str,
        request_id: str,
        budget: int,
        slow_consumer: str,
        ping: float | None,
        last_event_id: str | None,
    ) -> None:
        self.route = route
        self.request_id = request_id
        self.last_event_id = last_event_id
        self.ping = ping
        self.slow_consumer = slow_consumer
        self.dropped = 0
        self._stream = stream
        self._clock = clock
        self._subscribe_to = subscribe_to
        # None: nothing to call yet; one callable, or a list of them only
        # from the second (most streams have one: an idle stream's bytes
        # count); _FIRED: ended.
        self._end_callbacks: _EndCallbacks = None
        self._budget = budget
        # (the stream's resume count, when it was first seen undrained)
        self._stalled: tuple[int, float] | None = None
        # None: nobody asked yet; a list: waiting; _FIRED: all fired.
        self._done: list[Deferred[None]] | tuple[()] | None = None

    @property
    def closed(self) -> bool:
        """Whether sends are no longer accepted."""
        return self._stream.closed

    @property
    def lags(self) -> bool:
        """
        Whether a hub event over the budget makes it lag (caught up from
        history later) rather than disconnect: every policy but
        ``"disconnect"`` (``"drop"`` never drops a hub event, SPEC §5.5).
        """
        return self.slow_consumer != "disconnect"

    @property
    def done(self) -> Deferred[None]:
        """
        A new Deferred that fires ``None`` once the stream has ended for any
        reason (close, disconnect, shutdown, slow consumer), at once if it
        already has. Never fails; its callbacks never run inside a ``send``,
        ``comment`` or ``close`` call.
        """
        if self._done is _FIRED:
            return succeed(None)
        d: Deferred[None] = Deferred()
        if self._done is None:
            self._done = []
        self._done.append(d)  # type: ignore[union-attr]
        return d

    def send(
        self,
        data: Any,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
    ) -> Deferred[bool]:
        """
        Send one event. ``data``: a ``str`` as is, bytes as UTF-8, anything
        else as compact JSON.

        :return: a Deferred firing ``True`` once the event is accepted
            below the high-water mark (later, while the client's window is
            full), ``False`` if it was not sent: the stream is closed, or it
            was over budget under ``"drop"``.
        :raises ValueError: ``event``/``id`` with CR or LF, ``id`` with NUL,
            a bad ``retry``, data that is not JSON-able.
        """
        return self._write(_last_event.encode(data, event, id, retry))

    def comment(self, text: str = "") -> Deferred[bool]:
        """Send ``: text`` (one such line per line of ``text``); as `send`."""
        return self._write(encode(Comment(text)))

    def subscribe(
        self,
        *channels: str,
        history: int = 0,
        presence: Any = None,
        presence_events: bool = False,
    ) -> Deferred[None]:
        """
        Deliver every event published on ``channels`` through the app's hub
        (``ctx.hub.publish``) to this stream. With a ``last_event_id``, the
        events after it come first from the channels' history, or a
        ``reset`` event for a channel that cannot be resumed; without one,
        the last ``history`` events of each channel.

        :param presence: JSON-able info (at most 1 KiB encoded): the stream
            is present on ``channels`` (``hub.presence(channel)``) while it
            is open.
        :param presence_events: also publish ``join``/``leave`` events with
            that info on ``channels``.
        :return: a Deferred firing once the stream is caught up on the new
            channels and takes their live events.
        :raises ValueError: for a bad channel name, ``history`` or info.
        """
        joined: Deferred[None] = self._subscribe_to.subscribe(
            self,
            channels,
            self.last_event_id,
            history=history,
            presence=presence,
            presence_events=presence_events,
        )
        return joined

    def close(self) -> None:
        """End the response once what was sent has been handed on; idempotent."""
        self._stream.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<EventStream {self.route} {state} request {self.request_id}>"

    # Called by the hub, the response controller and the registry.

    def _on_end(self, callback: Callable[[EventStream], None]) -> None:
        """Call ``callback(self)`` when the stream ends, before ``done`` fires."""
        callbacks = self._end_callbacks
        if callbacks is _FIRED:
            callback(self)
        elif callbacks is None:
            self._end_callbacks = callback
        elif isinstance(callbacks, list):
            callbacks.append(callback)
        else:
            self._end_callbacks = [callbacks, callback]  # type: ignore[list-item]

    def _deliver(self, payload: bytes) -> bool:
        """
        Hand already encoded event bytes to the stream without waiting (the
        hub's fan-out), under the budget and slow-consumer policy.

        :return: ``False`` when refused (closed, or over budget).
        """
        stream = self._stream
        if stream._state is not _OPEN:
            return False
        held = stream._held_bytes
        if held and held + len(payload) > self._budget:
            self._over_budget(held)
            return False
        stream._push(payload)
        return True

    def _offer(self, payload: bytes) -> bool:
        """
        Take a hub event's encoded bytes if they fit the budget. ``False``
        when closed, or over the budget: then under "disconnect" the stream
        is cut; under every other policy nothing happens (the hub makes it
        lag, `lags`).
        """
        stream = self._stream
        if stream._state is not _OPEN:
            return False
        held = stream._held_bytes
        if held and held + len(payload) > self._budget:
            if self.slow_consumer == "disconnect":
                self._over_budget(held)
            return False
        stream._push(payload)
        return True

    def _when_drained(self, callback: Callable[[], None]) -> None:
        """
        Call ``callback`` (on a later turn) once what the stream holds has
        gone to the network and its transport is not paused.
        """
        clock = self._clock

        def drained() -> None:
            clock.callLater(0, callback)

        self._stream._on_drained = drained

    def _fail(self, body: Any) -> None:
        """The handler failed after the stream opened: an error event, then close."""
        self._stream._push(encode_fields(body, "error"))
        self._stream.close()

    def _shut_down(self, retry: int) -> None:
        """Ask the client to come back in ``retry`` ms, then close."""
        stream = self._stream
        if stream.closed:
            return
        stream._end_reason = "shutdown"
        stream._push(encode_retry(retry))
        stream.close()

    def _cut(self, reason: str = "shutdown") -> None:
        """Drop the connection now (the shutdown grace is over, by default)."""
        self._stream._abort(reason)

    def _tick(self, now: float, write_timeout: float) -> None:
        """
        The registry's timer: close the stream if its buffer has not drained
        for ``write_timeout`` seconds, else send a heartbeat if it has been
        silent for ``ping`` seconds.
        """
        stream = self._stream
        if getattr(stream._request, "channel", None) is None:
            # The connection is gone and nobody said so (a transport that
            # does not stop its producer): end the stream now.
            stream._lost()
            return
        if stream._paused or stream._held_bytes:
            mark = stream._resumed
            if self._stalled is None or self._stalled[0] != mark:
                self._stalled = (mark, now)
            elif now - self._stalled[1] >= write_timeout:
                self._log.warn(
                    "SSE stream stuck: its buffer has not drained for "
                    "{seconds:.0f} s; closed (request {request_id})",
                    seconds=now - self._stalled[1],
                    request_id=self.request_id,
                )
                SSE_COUNTERS.stuck += 1
                stream._abort("stuck")
            return
        self._stalled = None
        if self.ping is not None and now - stream._last_write >= self.ping:
            if stream._state is _OPEN:
                SSE_COUNTERS.heartbeats += 1
                stream._push(HEARTBEAT)

    def _write(self, payload: bytes) -> Deferred[bool]:
        stream = self._stream
        if stream._state is not _OPEN:
            return succeed(False)
        held = stream._held_bytes
        if held and held + len(payload) > self._budget:
            self._over_budget(held)
            return succeed(False)
        return stream._accept(payload)

    def _over_budget(self, queued: int) -> None:
        # (A send of its own cannot be caught up: "lag" disconnects then.)
        dropping = self.slow_consumer == "drop"
        if not (dropping and self.dropped):
            self._log.info(
                "SSE client too slow: {queued} bytes unsent, over the {budget} "
                "byte budget; {action} (request {request_id})",
                queued=queued,
                budget=self._budget,
                action="dropping events" if dropping else "disconnected",
                request_id=self.request_id,
            )
        if dropping:
            self.dropped += 1
            SSE_COUNTERS.dropped += 1
        else:
            SSE_COUNTERS.kicked += 1
            self._stream._abort("too_slow")

    def _ended(self) -> None:
        """The stream ended (the response controller says so)."""
        callbacks, self._end_callbacks = self._end_callbacks, _FIRED
        if isinstance(callbacks, list):
            for callback in callbacks:
                callback(self)
        elif callbacks is not None and callbacks is not _FIRED:
            callbacks(self)  # type: ignore[operator]
        if self._done:
            # Later, never inside the send/close that ended the stream.
            self._clock.callLater(0, self._fire_done)
        else:
            self._done = _FIRED

    def _fire_done(self) -> None:
        done, self._done = self._done, _FIRED
        for d in done or ():
            d.callback(None)


#: What a run's ``end`` event starts with on the wire, after its id line.
_END_FIELD = b"\nevent: end\n"


class RunStream(EventStream):
    """
    A client attached to a run (``sse(run=key)``): it closes itself once
    the run's ``end`` event is handed on, so EventSource reconnects with
    that event's id (and gets 204: nothing runs again).
    """

    __slots__ = ()

    def _deliver(self, payload: bytes) -> bool:
        taken = super()._deliver(payload)
        if taken and _END_FIELD in payload:
            self._close_soon()
        return taken

    def _offer(self, payload: bytes) -> bool:
        taken = super()._offer(payload)
        if taken and _END_FIELD in payload:
            self._close_soon()
        return taken

    def _close_soon(self) -> None:
        # Not inside the hub's delivery: on the next turn.
        self._clock.callLater(0, self.close)
