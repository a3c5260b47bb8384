# -*- test-case-name: tests.test_redishub,tests.test_redis_server -*-
"""
The hub's Redis backend (``--hub redis://host:port/db``): history, ids,
idempotency keys and presence live in Redis, so every process serving the
app shares its channels.

In Redis, for a key prefix ``P`` (``oxian:hub``):

- ``P:head``: a hash with ``epoch`` (names the history; made anew when
  Redis lost it) and ``last`` (the newest id of all channels).
- ``P:s:<channel>``: a Redis Stream per channel, entry ``w`` the event's
  encoded lines without its ``id:`` line; ``P:m:<channel>`` its record:
  ``evicted`` (the newest id gone from the stream), ``newest``, ``bytes``.
  The stream expires once its newest event is older than the history age,
  the record later, so that a stream lost early is noticed.
- ``P:i:<channel>:<key>``: the id a publish with an idempotency key got,
  for `IDEMPOTENCY_WINDOW`.
- ``P:p:<channel>``, ``P:pz:<channel>``: who is present (info, leave
  event) and until when, renewed by each process every third of
  ``--hub-presence-ttl``.
- Pub/sub channel ``P:<db>``: every publish (``e``) and presence event
  (``p``), to every process.

An id is ``<epoch>-<ms>-<n>``: ``n`` counts every publish of the epoch, so
a process that sees ``n`` jump knows it missed a message (pub/sub is
at-most-once) and catches its streams up from history first. A publish is
one Lua script (idempotency, id, ``XADD``, eviction, ``PUBLISH``), so every
process sees every event in one order. A replay is one script too, run on
the connection that receives the pub/sub pushes: pushes that arrive before
its reply were published before it ran, so the reply's newest id tells
which of them the replay already holds. The scripts are the ``lua/`` files
of this package.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import re
from collections.abc import Callable, Iterable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .._config import (
    HUB_HISTORY,
    HUB_HISTORY_AGE,
    HUB_HISTORY_BYTES,
    HUB_PRESENCE_TTL,
)
from .._errors import HubTimeout, HubUnavailable
from ..sse import encode_fields
from ._channels import (
    EARLIEST,
    IDEMPOTENCY_WINDOW,
    HubStats,
    Locals,
    Presence,
    check_channel,
    check_idempotency_key,
    decode_presence,
    fan_out,
    reset_wire,
)
from ._client import RedisAddress, RedisConnection, RedisProtocol
from ._interface import IHub, ISubscriber
from ._resp import Push, RespError

#: Seconds a publish waits for Redis's answer before failing with 504.
PUBLISH_TIMEOUT = 5.0
PREFIX = "oxian:hub"
_ID = re.compile(r"([0-9a-f]{1,16})-([0-9]{1,15})-([0-9]{1,15})")

#: An event's place: (epoch, ms, n). Only places of one epoch compare.
Place = tuple[str, int, int]
_NOWHERE: Place = ("", 0, 0)


def _script(*names: str) -> str:
    files = importlib.resources.files(__package__) / "lua"
    return "".join((files / f"{name}.lua").read_text("utf-8") for name in names)


PUBLISH_SCRIPT = _script("common", "history", "publish")
REPLAY_SCRIPT = _script("common", "history", "replay")
PRESENCE_SCRIPT = _script("common", "presence")
ABSENT_SCRIPT = _script("common", "absent")


@functools.cache
def _sha(script: str) -> str:
    return hashlib.sha1(script.encode("utf-8")).hexdigest()


def _place(event_id: str) -> Place | None:
    match = _ID.fullmatch(event_id)
    if match is None:
        return None
    return match[1], int(match[2]), int(match[3])


@attrs.frozen
class _Replayed:
    """A replay's answer: the newest place when it ran, and per channel what to send."""

    newest: Place
    #: channel -> (whether a reset comes first, the events' (place, wire)).
    channels: dict[str, tuple[bool, list[tuple[Place, bytes]]]]

    def holds(self, channel: str, place: Place | None) -> bool:
        """Whether a live event at ``place`` was published before the replay ran."""
        newest = self.newest
        return (
            place is not None
            and channel in self.channels
            and place[0] == newest[0]
            and place[1:] <= newest[1:]
        )


class _Fetch:
    """
    A replay of ``channels`` (``mode`` ``"after"`` an id, ``"earliest"``,
    ``"tail"`` for the last ``arg`` events), shared by the streams awaiting it.
    """

    __slots__ = ("channels", "mode", "arg", "own", "result")

    def __init__(
        self, channels: Iterable[str], mode: str, arg: str, own: bool = False
    ) -> None:
        self.channels = frozenset(channels)
        self.mode = mode
        self.arg = arg
        #: The hub's own catch-up, from the last event it saw live.
        self.own = own
        self.result: _Replayed | None = None


class _CatchUp:
    """A stream waiting for replays; its live events wait here meanwhile."""

    __slots__ = ("fetches", "buffer")

    def __init__(self) -> None:
        self.fetches: list[_Fetch] = []
        self.buffer: list[tuple[Place | None, str, bytes]] = []


@implementer(IHub)
class RedisHub:
    """
    The hub of SPEC §11 with Redis holding history, ids, idempotency keys
    and presence (``--hub redis://...``).

    :param clock: returns the reactor (``IReactorTCP``, ``IReactorTime``),
        resolved late.
    :param presence_ttl: seconds a process that stopped renewing (killed)
        stays present.
    :param connect: builds the connection (tests pass a fake); the default
        is a `RedisConnection` to ``address``.
    """

    _log = Logger()

    def __init__(
        self,
        address: RedisAddress,
        clock: Callable[[], Any],
        *,
        history: int = HUB_HISTORY,
        history_bytes: int = HUB_HISTORY_BYTES,
        history_age: float = HUB_HISTORY_AGE,
        presence_ttl: float = HUB_PRESENCE_TTL,
        connect: Callable[..., RedisConnection] = RedisConnection,
    ) -> None:
        self.address = address
        self._clock = clock
        self._connect = connect
        self._age = str(int(history_age * 1000))
        self._limits = (str(history), str(history_bytes))
        self._history = history
        self._presence_ttl = presence_ttl
        self._pubsub = f"{PREFIX}:{address.db}".encode()
        self._head_key = f"{PREFIX}:head"
        self._connection: RedisConnection | None = None
        self._stats = HubStats()
        self._locals = Locals(self._stats, self._ended)
        self._catching_up: dict[ISubscriber, _CatchUp] = {}
        #: The newest event this process knows was published (``None``: not
        #: connected yet); a reconnection or a gap replays what followed it.
        self._seen: Place | None = None
        #: The hub's own replay (where the channels are, or what a
        #: reconnection or a gap missed) until it answered: pushes
        #: meanwhile must not move `_seen` past events it has yet to bring.
        self._refill: _Fetch | None = None
        #: Where the live events that arrived during the refill were.
        self._pending: list[Place] = []
        self._renewal: IDelayedCall | None = None
        self._failing = False

    # The hub interface.

    def publish(
        self,
        channel: str,
        data: Any,
        event: str | None = None,
        idempotency_key: str | None = None,
    ) -> Deferred[str]:
        """
        Publish on ``channel`` through Redis: a Deferred firing with the id
        once Redis stored the event and sent it to every process (with the
        first publish's id for an ``idempotency_key`` used on this channel
        in the last 5 minutes, by any process); failing with
        `HubUnavailable` (503) when nothing could be sent (Redis
        unreachable, or answering with an error), with `HubTimeout` (504)
        when the publish was sent but not confirmed within
        `PUBLISH_TIMEOUT` (it may have been published: retry with the same
        key), or ``ValueError``/``TypeError`` for a bad channel, event, key
        or data.
        """
        try:
            check_channel(channel)
            if idempotency_key is not None:
                check_idempotency_key(idempotency_key)
            # The id line is Redis's to add, after the other lines.
            body = encode_fields(data, event)[:-1]
        except (TypeError, ValueError):
            return fail()
        args = (channel, body, idempotency_key)
        sent = self._when_ready(self._publish, args)
        sent.addTimeout(PUBLISH_TIMEOUT, self._clock())
        return sent.addCallbacks(self._published, self._unavailable)

    def subscribe(
        self,
        stream: ISubscriber,
        channels: Iterable[str],
        last_event_id: str | None = None,
        history: int = 0,
        presence: Any = None,
        presence_events: bool = False,
    ) -> None:
        """As `MemoryHub.subscribe`; live events wait while Redis answers the replay."""
        new, mine = self._locals.admit(
            stream, channels, history, presence, presence_events
        )
        if not new:
            return
        connection = self._started()
        if mine is not None:
            self._be_present(new, [mine])
        if last_event_id is None:
            if not history:
                return
            fetch = _Fetch(new, "tail", str(history))
        elif last_event_id == EARLIEST:
            fetch = _Fetch(new, "earliest", "")
        elif _place(last_event_id) is None:
            for name in new:
                self._reset(stream, name, last_event_id)
            return
        else:
            fetch = _Fetch(new, "after", last_event_id)
        self._catching_up.setdefault(stream, _CatchUp()).fetches.append(fetch)
        if connection.protocol is not None:
            self._run([fetch], connection.protocol)

    def presence(self, channel: str) -> Deferred[dict[str, Any]]:
        """
        ``{subscriber_id: info}`` of every process, from Redis (members
        whose process stopped renewing are dropped first); failing with
        `HubUnavailable` when Redis cannot be asked.
        """
        try:
            check_channel(channel)
        except (TypeError, ValueError):
            return fail()
        asked = self._when_ready(self._ask_presence, (channel,))
        asked.addTimeout(PUBLISH_TIMEOUT, self._clock())

        def unavailable(failure: Failure) -> Failure:
            self._log.warn(
                "hub: presence of {channel} unavailable: {why}",
                channel=channel,
                why=failure.value,
            )
            return Failure(HubUnavailable())

        answer: Deferred[dict[str, Any]] = asked.addErrback(unavailable)
        return answer

    def presence_count(self, channel: str) -> Deferred[int]:
        """How many are present on ``channel`` (read from `presence`)."""
        return self.presence(channel).addCallback(len)

    def stats(self) -> HubStats:
        """A snapshot of this process's counters (``channels``: subscribed here)."""
        return attrs.evolve(self._stats, channels=len(self._locals))

    def start(self) -> None:
        """Connect to Redis (publish and subscribe also start it)."""
        self._started()

    def stop(self) -> Deferred[None]:
        """Disconnect; a later publish or subscribe connects again."""
        if self._renewal is not None and self._renewal.active():
            self._renewal.cancel()
        self._renewal = None
        connection, self._connection = self._connection, None
        if connection is None:
            return succeed(None)
        return connection.stop()

    # Connection.

    def _started(self) -> RedisConnection:
        if self._connection is None:
            self._connection = self._connect(
                self.address,
                self._clock(),
                on_push=self._pushed,
                prepare=self._prepare,
                on_ready=self._ready,
            )
            self._connection.start()
        return self._connection

    def _when_ready(
        self, run: Callable[..., Deferred[Any]], args: tuple[Any, ...]
    ) -> Deferred[Any]:
        """``run(protocol, *args)`` on the ready connection, or its first one."""
        connection = self._started()
        if connection.protocol is not None:
            return run(connection.protocol, *args)
        if connection.was_ready:
            return fail(ConnectionLost("not connected to Redis"))
        return connection.first_attempt().addCallback(run, *args)

    def _prepare(self, protocol: RedisProtocol) -> Deferred[None]:
        return protocol.subscribe(self._pubsub)

    def _ready(self, protocol: RedisProtocol) -> None:
        self._failing = False
        if self._seen is None:
            # First connection: learn where the channels are now.
            self._refill = _Fetch((), "tail", "0")
        else:
            self._catch_up_all("reconnected")
        waiting = [
            f
            for catch_up in self._catching_up.values()
            for f in catch_up.fetches
            if f.result is None
        ]
        assert self._refill is not None
        # Each once, the refill first: a fetch shared by streams runs once.
        self._run(list(dict.fromkeys([self._refill, *waiting])), protocol)
        # Presence may have been lost with the connection (or with Redis).
        self._renew()

    def _catch_up_all(self, why: str) -> _Fetch:
        """
        Every stream here catches up from the last event this process saw,
        in one replay shared by all; live events wait meanwhile.
        """
        assert self._seen is not None
        old = self._refill
        # The new replay starts before everything the old one would have
        # had to check.
        self._pending = []
        epoch, ms, n = self._seen
        refill = self._refill = _Fetch(
            self._locals.channels(), "after", f"{epoch}-{ms}-{n}", own=True
        )
        for stream in self._locals.streams():
            catch_up = self._catching_up.setdefault(stream, _CatchUp())
            if old is not None and old in catch_up.fetches:
                catch_up.fetches.remove(old)
            catch_up.fetches.append(refill)
        self._log.info(
            "hub: {why}; catching {count} streams up from {seen}",
            why=why,
            count=len(self._catching_up),
            seen=refill.arg,
        )
        return refill

    # Publishing.

    def _publish(
        self,
        protocol: RedisProtocol,
        channel: str,
        body: bytes,
        key: str | None,
    ) -> Deferred[Any]:
        stream_key, meta_key = _keys(channel)
        sent = protocol.open
        reply = _evaluate(
            protocol,
            PUBLISH_SCRIPT,
            self._head_key,
            stream_key,
            meta_key,
            f"{PREFIX}:i:{channel}:{key or ''}",
            body,
            self._age,
            *self._limits,
            self._pubsub,
            channel,
            "0" if key is None else "1",
            str(int(IDEMPOTENCY_WINDOW * 1000)),
            keys=4,
        )
        # Sent: Redis may run it even if its answer never comes.
        return reply.addErrback(_mark_sent, sent)

    def _published(self, reply: list[Any]) -> str:
        event_id, earlier = reply
        if earlier:
            self._stats.duplicates += 1
        else:
            self._stats.published += 1
        return str(event_id.decode("ascii"))

    def _unavailable(self, failure: Failure) -> Failure:
        # Sent and then unanswered or lost on the way: Redis may have run
        # the script. An error reply (never marked sent) means it did not.
        unknown = isinstance(failure.value, _Sent)
        cause = failure.value.cause if unknown else None  # type: ignore[union-attr]
        if not self._failing:
            # Once per outage: the connection logs its own state.
            self._failing = True
            self._log.warn(
                "hub: publish failed, Redis at {address} unavailable: {why}"
                + ("; it may have been published" if unknown else ""),
                address=self.address,
                why=cause or failure.value,
            )
        if unknown:
            raise HubTimeout()
        raise HubUnavailable()

    # Presence.

    def _ask_presence(
        self, protocol: RedisProtocol, channel: str
    ) -> Deferred[dict[str, Any]]:
        return self._present(protocol, channel, [], want=True).addCallback(
            _presence_map
        )

    def _present(
        self,
        protocol: RedisProtocol,
        channel: str,
        presences: list[Presence],
        want: bool = False,
    ) -> Deferred[Any]:
        triples: list[str | bytes] = []
        for presence in presences:
            leave = presence.leave(channel) or b""
            triples += [
                presence.id,
                presence.info.encode("utf-8") + b"\n" + leave,
                presence.join(channel) or b"",
            ]
        return _evaluate(
            protocol,
            PRESENCE_SCRIPT,
            *_presence_keys(channel),
            str(int(self._presence_ttl * 1000)),
            self._pubsub,
            channel,
            "1" if want else "0",
            *triples,
            keys=2,
        )

    def _be_present(self, channels: list[str], presences: list[Presence]) -> None:
        connection = self._started()
        if connection.protocol is not None:
            for channel in channels:
                mine = [p for p in presences if channel in p.channels]
                self._present(connection.protocol, channel, mine).addErrback(
                    self._presence_failed, channel
                )
        # Not connected: `_ready` renews every presence.
        self._schedule_renewal()

    def _renew(self) -> None:
        renewal, self._renewal = self._renewal, None
        if renewal is not None and renewal.active():
            # Called early (reconnected): one timer, not two.
            renewal.cancel()
        if self._connection is None:
            # Stopped: nothing renews until a subscribe starts it again.
            return
        by_channel: dict[str, list[Presence]] = {}
        for presence in self._locals.presences():
            for channel in presence.channels:
                by_channel.setdefault(channel, []).append(presence)
        if not by_channel:
            return
        connection = self._started()
        if connection.protocol is not None:
            for channel, presences in by_channel.items():
                self._present(connection.protocol, channel, presences).addErrback(
                    self._presence_failed, channel
                )
        self._schedule_renewal()

    def _schedule_renewal(self) -> None:
        if self._renewal is None or not self._renewal.active():
            self._renewal = self._clock().callLater(self._presence_ttl / 3, self._renew)

    def _presence_failed(self, failure: Failure, channel: str) -> None:
        self._log.info(
            "hub: presence on {channel} not renewed ({why}); retried",
            channel=channel,
            why=failure.value,
        )

    def _ended(
        self, stream: ISubscriber, names: list[str], presence: Presence | None
    ) -> None:
        self._catching_up.pop(stream, None)
        if presence is None:
            return
        connection = self._connection
        if connection is None or connection.protocol is None:
            # Redis drops it after the presence TTL, with its leave event.
            return
        for channel in presence.channels:
            _evaluate(
                connection.protocol,
                ABSENT_SCRIPT,
                *_presence_keys(channel),
                self._pubsub,
                channel,
                presence.id,
                keys=2,
            ).addErrback(self._presence_failed, channel)

    # Live events.

    def _pushed(self, push: Push) -> None:
        if len(push) != 3 or push[0] != b"message" or push[1] != self._pubsub:
            return
        message = push[2]
        kind = message[:2]
        try:
            if kind == b"p\n":
                name, wire = message[2:].split(b"\n", 1)
                self._live(name.decode("utf-8"), None, wire)
                return
            if kind != b"e\n":
                raise ValueError(kind)
            name, event_id, body = message[2:].split(b"\n", 2)
            text = event_id.decode("ascii")
            place = _place(text)
            if place is None:
                raise ValueError(event_id)
            channel = name.decode("utf-8")
        except ValueError:
            self._log.warn(
                "hub: ignored a malformed message on {channel}", channel=push[1]
            )
            return
        if not self._in_order(place):
            return
        self._live(channel, place, b"%sid: %s\n\n" % (body, event_id))

    def _in_order(self, place: Place) -> bool:
        """
        Whether a live event is the next one: ``n`` one past the last seen
        of the epoch (or the first of a new epoch). A hole starts a
        catch-up from history before anything newer is delivered; an event
        already seen (late, or repeated) is dropped.
        """
        seen = self._seen
        if self._refill is not None or seen is None:
            # Held by the catch-up under way, which checks them when done.
            self._pending.append(place)
            return True
        step = _step(seen, place)
        if step is _NEXT:
            self._seen = place
            return True
        if step is _SEEN:
            self._log.warn(
                "hub: dropped a live event already seen ({epoch}-{ms}-{n})",
                epoch=place[0],
                ms=place[1],
                n=place[2],
            )
            return False
        self._gap(place)
        return True

    def _gap(self, place: Place) -> None:
        """A hole before ``place``: catch every stream up from `_seen`."""
        self._stats.gaps += 1
        refill = self._catch_up_all("missed live events before {}-{}-{}".format(*place))
        connection = self._connection
        if connection is not None and connection.protocol is not None:
            self._run([refill], connection.protocol)

    def _live(self, channel: str, place: Place | None, wire: bytes) -> None:
        subscribers = self._locals.of(channel)
        if not subscribers:
            return
        if not self._catching_up:
            fan_out(subscribers, wire, self._stats)
            return
        live = []
        for stream in list(subscribers):
            catch_up = self._catching_up.get(stream)
            if catch_up is None:
                live.append(stream)
            elif len(catch_up.buffer) < max(self._history, 1):
                catch_up.buffer.append((place, channel, wire))
            else:
                self._log.warn(
                    "hub: {request_id}'s replay took too long, {count} live events "
                    "waiting; disconnected, to resume from its last id",
                    request_id=stream.request_id,
                    count=len(catch_up.buffer),
                )
                self._catching_up.pop(stream)
                stream._cut("too_slow")
        fan_out(live, wire, self._stats)

    # Replay.

    def _run(self, fetches: list[_Fetch], protocol: RedisProtocol) -> None:
        for fetch in fetches:
            names = sorted(fetch.channels)
            keys = [k for name in names for k in _keys(name)]
            # An "after" fetch is for an id of some epoch; the hub's own
            # may be of none yet ("-0-0": nothing seen).
            place = _place(fetch.arg) or ("", 0, 0) if fetch.mode == "after" else None
            replayed = _evaluate(
                protocol,
                REPLAY_SCRIPT,
                self._head_key,
                *keys,
                place[0] if place else "",
                self._age,
                self._limits[0],
                fetch.mode,
                f"{place[1]}-{place[2]}" if place else fetch.arg,
                "1" if fetch.own else "0",
                keys=1 + len(keys),
            )
            replayed.addCallbacks(
                self._replayed,
                self._not_replayed,
                callbackArgs=(fetch, names),
                errbackArgs=(fetch,),
            )

    def _replayed(self, reply: list[Any], fetch: _Fetch, names: list[str]) -> None:
        epoch = reply[0].decode("ascii")
        ms, _, n = reply[1].partition(b"-")
        newest: Place = (epoch, int(ms), int(n))
        per_channel = reply[2:]
        channels = {
            name: (bool(reset), _events(epoch, entries))
            for name, reset, entries in zip(
                names, per_channel[::2], per_channel[1::2], strict=True
            )
        }
        if fetch is self._refill and not self._settle(newest):
            # Live events went missing while it ran: it is asked again, from
            # the same place, before any stream is answered.
            return
        self._answered(fetch, _Replayed(newest, channels))

    def _settle(self, newest: Place) -> bool:
        """
        The refill ran with ``newest`` the newest event: the live events
        that arrived meanwhile must follow it without a hole. Moves `_seen`
        to the last of them; ``False`` (and a new refill) on a hole.
        """
        pending, self._pending = self._pending, []
        seen = newest
        for place in pending:
            step = _step(seen, place)
            if step is _NEXT:
                seen = place
            elif step is not _SEEN:
                if self._seen is None:
                    self._seen = newest
                self._gap(place)
                return False
        self._seen = seen
        return True

    def _not_replayed(self, failure: Failure, fetch: _Fetch) -> None:
        if not failure.check(RespError):
            # The connection was lost: the fetch stays and runs when it is back.
            self._log.info(
                "hub: replay of {channels} waits for Redis ({why})",
                channels=sorted(fetch.channels),
                why=failure.value,
            )
            return
        # Redis refused the replay: it will not do better if asked again, so
        # its streams learn they may have missed events, instead of waiting.
        self._log.error(
            "hub: Redis refused the replay of {channels} ({why}); resetting them",
            channels=sorted(fetch.channels),
            why=failure.value,
        )
        self._answered(
            fetch, _Replayed(_NOWHERE, {name: (True, []) for name in fetch.channels})
        )

    def _answered(self, fetch: _Fetch, result: _Replayed) -> None:
        fetch.result = result
        if fetch is self._refill:
            self._refill = None
        for stream, catch_up in list(self._catching_up.items()):
            if fetch in catch_up.fetches and all(
                f.result is not None for f in catch_up.fetches
            ):
                del self._catching_up[stream]
                self._caught_up(stream, catch_up)

    def _caught_up(self, stream: ISubscriber, catch_up: _CatchUp) -> None:
        own = set(self._locals.channels_of(stream))
        events: dict[Place, bytes] = {}
        results = []
        for fetch in catch_up.fetches:
            result = fetch.result
            assert result is not None
            results.append(result)
            for name, (reset, replay) in result.channels.items():
                if name not in own:
                    continue
                if reset:
                    self._reset(stream, name, fetch.arg)
                events.update(replay)
        stats = self._stats
        for order in sorted(events):
            if not stream._deliver(events[order]):
                return
            stats.replayed += 1
        for place, channel, wire in catch_up.buffer:
            if not any(result.holds(channel, place) for result in results):
                if stream._deliver(wire):
                    stats.delivered += 1
                else:
                    stats.dropped += 1

    def _reset(self, stream: ISubscriber, channel: str, last_event_id: str) -> None:
        self._stats.resets += 1
        stream._deliver(reset_wire(channel, last_event_id))


class _Sent(Exception):
    """A publish that reached Redis's connection and then failed."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


_NEXT, _SEEN, _HOLE = object(), object(), object()


def _step(seen: Place, place: Place) -> object:
    """
    What a live event at ``place`` is after one at ``seen``: `_NEXT` (the
    next publish, or the first of a new epoch), `_SEEN` (not newer: late
    or repeated), or `_HOLE` (publishes in between were missed).
    """
    if place[0] == seen[0]:
        if place[2] <= seen[2]:
            return _SEEN
        return _NEXT if place[2] == seen[2] + 1 else _HOLE
    # Another epoch: Redis lost its data; its first event misses nothing.
    return _NEXT if place[2] == 1 else _HOLE


def _mark_sent(failure: Failure, sent: bool) -> Failure:
    if sent and not failure.check(RespError):
        raise _Sent(failure.value or ConnectionLost())
    return failure


def _events(epoch: str, entries: list[Any]) -> list[tuple[Place, bytes]]:
    events = []
    for stream_id, fields in entries:
        ms, _, n = stream_id.partition(b"-")
        events.append(
            (
                (epoch, int(ms), int(n)),
                b"%sid: %s-%s\n\n" % (fields[1], epoch.encode("ascii"), stream_id),
            )
        )
    return events


def _presence_map(reply: list[Any]) -> dict[str, Any]:
    present = {}
    for sid, value in zip(reply[::2], reply[1::2], strict=True):
        present[sid.decode("utf-8")] = value.partition(b"\n")[0].decode("utf-8")
    return decode_presence(present)


def _keys(channel: str) -> tuple[str, str]:
    return f"{PREFIX}:s:{channel}", f"{PREFIX}:m:{channel}"


def _presence_keys(channel: str) -> tuple[str, str]:
    return f"{PREFIX}:p:{channel}", f"{PREFIX}:pz:{channel}"


def _evaluate(
    protocol: RedisProtocol, script: str, *args: bytes | str, keys: int
) -> Deferred[Any]:
    """Run a script by its digest, sending its text only when Redis lacks it."""

    def unknown(failure: Failure) -> Deferred[Any] | Failure:
        error = failure.value
        if not isinstance(error, RespError) or error.kind != "NOSCRIPT":
            return failure
        return protocol.command(b"EVAL", script, keys, *args)

    return protocol.command(b"EVALSHA", _sha(script), keys, *args).addErrback(unknown)
