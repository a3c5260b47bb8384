# -*- test-case-name: tests.test_redishub -*-
"""
The hub's Redis backend (``--hub redis://host:port/db``): history and ids
live in Redis, so every process serving the app shares its channels.

In Redis, for a key prefix ``P`` (``oxian:hub``):

- ``P:s:<channel>``: a Redis Stream per channel, entry ``w`` the event's
  encoded lines without its ``id:`` line; ``P:m:<channel>`` a hash with
  ``evicted`` (the newest id evicted from the stream) and ``bytes``. Both
  expire once the channel's newest event is older than the history age.
- ``P:last``: the newest id of all channels. Ids are ``<ms>-<n>``: Redis's
  clock in ms (never going back) and one counter for all channels, so they
  are Redis Stream ids and increase strictly across channels.
- Pub/sub channel ``P:<db>``: every publish, to every process.

A publish is one Lua script (id, ``XADD``, eviction, ``PUBLISH``), so every
process sees every event in one order. A replay is one script too, run on
the connection that receives the pub/sub pushes: pushes that arrive before
its reply were published before it ran, so the reply's newest id tells
which of them the replay already holds.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionLost
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._errors import HubTimeout, HubUnavailable
from ._hub import HubStats, channel_names, check_channel, fan_out, reset_wire
from ._redis import RedisAddress, RedisConnection, RedisProtocol
from ._resp import Push, RespError
from .sse import encode_fields

if TYPE_CHECKING:
    from ._eventstream import EventStream

#: Seconds a publish waits for Redis's answer before failing with 503.
PUBLISH_TIMEOUT = 5.0
PREFIX = "oxian:hub"
_ID = re.compile(r"[0-9]{1,15}-[0-9]{1,15}")

_LUA_COMMON = """
local function parse(id)
  local ms, n = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(n)
end
local function later(a, b)
  local ams, an = parse(a)
  local bms, bn = parse(b)
  return ams > bms or (ams == bms and an > bn)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cutoff = now - tonumber(ARGV[2])
-- What a channel without a record may have held is older than the cutoff.
local unrecorded = string.format('%.0f-0', math.max(cutoff, 0))
"""

# KEYS: last, stream, meta.
# ARGV: body, age ms, max events, max bytes, pub/sub channel, channel.
PUBLISH_SCRIPT = (
    _LUA_COMMON
    + """
local ms, n = now, 1
local last = redis.call('GET', KEYS[1])
if last then
  local lms, ln = parse(last)
  if lms > ms then ms = lms end
  n = ln + 1
end
local id = string.format('%.0f-%.0f', ms, n)
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[3], 'evicted', unrecorded, 'bytes', 0)
end
redis.call('XADD', KEYS[2], id, 'w', ARGV[1])
redis.call('SET', KEYS[1], id)
local bytes = redis.call('HINCRBY', KEYS[3], 'bytes', #ARGV[1])
local count = redis.call('XLEN', KEYS[2])
local max_count, max_bytes = tonumber(ARGV[3]), tonumber(ARGV[4])
local evicted = nil
local done = false
while not done do
  local batch = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 100)
  if #batch == 0 then break end
  for _, entry in ipairs(batch) do
    if count > max_count or bytes > max_bytes or parse(entry[1]) <= cutoff then
      count = count - 1
      bytes = bytes - #entry[2][2]
      evicted = entry[1]
    else
      done = true
      break
    end
  end
  if evicted then
    local ems, en = parse(evicted)
    redis.call('XTRIM', KEYS[2], 'MINID', string.format('%.0f-%.0f', ems, en + 1))
  end
end
if evicted then
  redis.call('HSET', KEYS[3], 'evicted', evicted, 'bytes', bytes)
end
local ttl = tonumber(ARGV[2]) + 1000
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('PUBLISH', ARGV[5], ARGV[6] .. '\\n' .. id .. '\\n' .. ARGV[1])
return id
"""
)

# KEYS: last, then stream and meta of each channel.
# ARGV: after (an id), age ms, max events.
# Returns: the newest id (or now-0), then per channel a reset flag and the
# entries after ``after``.
REPLAY_SCRIPT = (
    _LUA_COMMON
    + """
local last = redis.call('GET', KEYS[1]) or string.format('%.0f-0', now)
local after = ARGV[1]
local unknown = later(after, last)
local out = {last}
for i = 2, #KEYS, 2 do
  local reset = unknown
  local entries = {}
  if not reset then
    reset = later(redis.call('HGET', KEYS[i + 1], 'evicted') or unrecorded, after)
  end
  if not reset then
    entries = redis.call('XRANGE', KEYS[i], '(' .. after, '+', 'COUNT', ARGV[3])
    if #entries > 0 and parse(entries[1][1]) <= cutoff then
      reset = true
      entries = {}
    end
  end
  out[#out + 1] = reset and 1 or 0
  out[#out + 1] = entries
end
return out
"""
)


@functools.cache
def _sha(script: str) -> str:
    return hashlib.sha1(script.encode("utf-8")).hexdigest()


def _order(event_id: bytes | str) -> tuple[int, int]:
    ms, _, n = event_id.partition(b"-" if isinstance(event_id, bytes) else "-")
    return int(ms), int(n)


class _Attempt:
    """One publish: whether its command reached the connection to Redis."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = False


@attrs.frozen
class _Replayed:
    """A replay's answer: the newest id when it ran, and per channel what to send."""

    newest: tuple[int, int]
    #: channel -> ``None`` for a reset, else its events' (order, wire).
    channels: dict[str, list[tuple[tuple[int, int], bytes]] | None]


class _Fetch:
    """A replay of ``channels`` after ``after``, shared by the streams awaiting it."""

    __slots__ = ("channels", "after", "result")

    def __init__(self, channels: Iterable[str], after: str) -> None:
        self.channels = frozenset(channels)
        self.after = after
        self.result: _Replayed | None = None


class _CatchUp:
    """A stream waiting for replays; its live events wait here meanwhile."""

    __slots__ = ("fetches", "buffer")

    def __init__(self) -> None:
        self.fetches: list[_Fetch] = []
        self.buffer: list[tuple[tuple[int, int], str, bytes]] = []


class RedisHub:
    """
    The hub of SPEC §11 with Redis holding history and ids (``--hub
    redis://...``); the same interface as the in-process `Hub`.

    :param clock: returns the reactor (``IReactorTCP``, ``IReactorTime``),
        resolved late.
    :param connect: builds the connection (tests pass a fake); the default
        is a `RedisConnection` to ``address``.
    """

    _log = Logger()

    def __init__(
        self,
        address: RedisAddress,
        clock: Callable[[], Any],
        *,
        history: int = 1000,
        history_bytes: int = 1024 * 1024,
        history_age: float = 3600.0,
        connect: Callable[..., RedisConnection] = RedisConnection,
    ) -> None:
        self.address = address
        self._clock = clock
        self._connect = connect
        self._limits = (
            str(int(history_age * 1000)),
            str(history),
            str(history_bytes),
        )
        self._history = history
        self._pubsub = f"{PREFIX}:{address.db}".encode()
        self._last_key = f"{PREFIX}:last"
        self._connection: RedisConnection | None = None
        self._locals: dict[str, set[EventStream]] = {}
        self._subscribed: dict[EventStream, list[str]] = {}
        self._catching_up: dict[EventStream, _CatchUp] = {}
        #: The newest id this process knows was published (``None``: not
        #: connected yet); a reconnection replays what followed it.
        self._seen: str | None = None
        #: The hub's own replay (where the channels are, or what a
        #: reconnection missed) until it answered: pushes meanwhile must not
        #: move `_seen` past events it has yet to bring.
        self._refill: _Fetch | None = None
        self._failing = False
        self._stats = HubStats()

    # The hub interface.

    def publish(
        self, channel: str, data: Any, event: str | None = None
    ) -> Deferred[str]:
        """
        Publish on ``channel`` through Redis: a Deferred firing with the id
        once Redis stored the event and sent it to every process; failing
        with `HubUnavailable` (503) when nothing could be sent (Redis
        unreachable, or answering with an error), with `HubTimeout` (504)
        when the publish was sent but not confirmed within
        `PUBLISH_TIMEOUT` (it may have been published), or
        ``ValueError``/``TypeError`` for a bad channel, event or data.
        """
        try:
            check_channel(channel)
            # The id line is Redis's to add, after the other lines.
            body = encode_fields(data, event)[:-1]
        except (TypeError, ValueError):
            return fail()
        connection = self._started()
        attempt = _Attempt()
        if connection.protocol is not None:
            sent = self._publish(connection.protocol, channel, body, attempt)
        elif connection.was_ready:
            sent = fail(ConnectionLost("not connected to Redis"))
        else:
            sent = connection.first_attempt().addCallback(
                self._publish, channel, body, attempt
            )
        sent.addTimeout(PUBLISH_TIMEOUT, self._clock())
        return sent.addCallbacks(
            self._published, self._unavailable, errbackArgs=(attempt,)
        )

    def subscribe(
        self,
        stream: EventStream,
        channels: Iterable[str],
        last_event_id: str | None = None,
    ) -> None:
        """As `Hub.subscribe`; live events wait while Redis answers the replay."""
        names = channel_names(channels)
        if stream.closed:
            return
        own = self._subscribed.setdefault(stream, [])
        new = [name for name in names if name not in own]
        for name in new:
            self._locals.setdefault(name, set()).add(stream)
            own.append(name)
            self._stats.subscribers += 1
        connection = self._started()
        if last_event_id is None or not new:
            return
        if not _ID.fullmatch(last_event_id):
            for name in new:
                self._reset(stream, name, last_event_id)
            return
        fetch = _Fetch(new, last_event_id)
        self._catching_up.setdefault(stream, _CatchUp()).fetches.append(fetch)
        if connection.protocol is not None:
            self._run([fetch], connection.protocol)

    def unsubscribe(self, stream: EventStream) -> None:
        """Stop delivering to ``stream`` (its end does this)."""
        self._catching_up.pop(stream, None)
        for name in self._subscribed.pop(stream, ()):
            subscribers = self._locals[name]
            subscribers.discard(stream)
            if not subscribers:
                del self._locals[name]
            self._stats.subscribers -= 1

    def stats(self) -> HubStats:
        """A snapshot of this process's counters (``channels``: subscribed here)."""
        return attrs.evolve(self._stats, channels=len(self._locals))

    def start(self) -> None:
        """Connect to Redis (publish and subscribe also start it)."""
        self._started()

    def stop(self) -> Deferred[None]:
        """Disconnect; a later publish or subscribe connects again."""
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

    def _prepare(self, protocol: RedisProtocol) -> Deferred[None]:
        return protocol.subscribe(self._pubsub)

    def _ready(self, protocol: RedisProtocol) -> None:
        self._failing = False
        old = self._refill
        if self._seen is None:
            # First connection: learn where the channels are now.
            self._refill = _Fetch((), "0-0")
        else:
            # Reconnected: every stream catches up from the last event this
            # process saw, in one replay shared by all.
            self._refill = _Fetch(self._locals, self._seen)
            for stream in self._subscribed:
                catch_up = self._catching_up.setdefault(stream, _CatchUp())
                if old in catch_up.fetches:
                    catch_up.fetches.remove(old)
                catch_up.fetches.append(self._refill)
        waiting = [
            f
            for catch_up in self._catching_up.values()
            for f in catch_up.fetches
            if f.result is None
        ]
        # Each once, the refill first: a fetch shared by streams runs once.
        self._run(list(dict.fromkeys([self._refill, *waiting])), protocol)

    def _publish(
        self, protocol: RedisProtocol, channel: str, body: bytes, attempt: _Attempt
    ) -> Deferred[Any]:
        attempt.sent = protocol.open
        stream_key, meta_key = _keys(channel)
        return _evaluate(
            protocol,
            PUBLISH_SCRIPT,
            self._last_key,
            stream_key,
            meta_key,
            body,
            *self._limits,
            self._pubsub,
            channel,
            keys=3,
        )

    def _published(self, event_id: bytes) -> str:
        self._stats.published += 1
        return event_id.decode("ascii")

    def _unavailable(self, failure: Failure, attempt: _Attempt) -> Failure:
        # Sent and then unanswered or lost on the way: Redis may have run
        # the script. An error reply means it did not.
        unknown = attempt.sent and not failure.check(RespError)
        if not self._failing:
            # Once per outage: the connection logs its own state.
            self._failing = True
            self._log.warn(
                "hub: publish failed, Redis at {address} unavailable: {why}"
                + ("; it may have been published" if unknown else ""),
                address=self.address,
                why=failure.value,
            )
        if unknown:
            raise HubTimeout()
        raise HubUnavailable()

    # Live events.

    def _pushed(self, push: Push) -> None:
        if len(push) != 3 or push[0] != b"message" or push[1] != self._pubsub:
            return
        try:
            name, event_id, body = push[2].split(b"\n", 2)
            order = _order(event_id)
            channel = name.decode("utf-8")
        except ValueError:
            self._log.warn(
                "hub: ignored a malformed message on {channel}", channel=push[1]
            )
            return
        if self._refill is None:
            self._seen = event_id.decode("ascii")
        subscribers = self._locals.get(channel)
        if not subscribers:
            return
        wire = b"%sid: %s\n\n" % (body, event_id)
        if not self._catching_up:
            fan_out(subscribers, wire, self._stats)
            return
        live = []
        for stream in list(subscribers):
            catch_up = self._catching_up.get(stream)
            if catch_up is None:
                live.append(stream)
            elif len(catch_up.buffer) < max(self._history, 1):
                catch_up.buffer.append((order, channel, wire))
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
            replayed = _evaluate(
                protocol,
                REPLAY_SCRIPT,
                self._last_key,
                *keys,
                fetch.after,
                *self._limits[:2],
                keys=1 + len(keys),
            )
            replayed.addCallbacks(
                self._replayed, self._not_replayed, (fetch, names), None, (fetch,)
            )

    def _replayed(self, reply: list[Any], fetch: _Fetch, names: list[str]) -> None:
        newest, per_channel = reply[0], reply[1:]
        channels: dict[str, list[tuple[tuple[int, int], bytes]] | None] = {}
        for name, reset, entries in zip(
            names, per_channel[::2], per_channel[1::2], strict=True
        ):
            channels[name] = (
                None
                if reset
                else [
                    (_order(eid), b"%sid: %s\n\n" % (fields[1], eid))
                    for eid, fields in entries
                ]
            )
        if fetch is self._refill:
            self._seen = max(self._seen or "0-0", newest.decode("ascii"), key=_order)
        self._answered(fetch, _Replayed(_order(newest), channels))

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
        self._answered(fetch, _Replayed((0, 0), dict.fromkeys(fetch.channels)))

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

    def _caught_up(self, stream: EventStream, catch_up: _CatchUp) -> None:
        own = set(self._subscribed.get(stream, ()))
        events: dict[tuple[int, int], bytes] = {}
        for fetch in catch_up.fetches:
            assert fetch.result is not None
            for name, replay in fetch.result.channels.items():
                if name not in own:
                    continue
                if replay is None:
                    self._reset(stream, name, fetch.after)
                else:
                    events.update(replay)
        stats = self._stats
        for order in sorted(events):
            if not stream._deliver(events[order]):
                return
            stats.replayed += 1
        for order, channel, wire in catch_up.buffer:
            held = any(
                channel in f.channels and order <= f.result.newest  # type: ignore[union-attr]
                for f in catch_up.fetches
            )
            if not held:
                if stream._deliver(wire):
                    stats.delivered += 1
                else:
                    stats.dropped += 1

    def _reset(self, stream: EventStream, channel: str, last_event_id: str) -> None:
        self._stats.resets += 1
        stream._deliver(reset_wire(channel, last_event_id))


def _keys(channel: str) -> tuple[str, str]:
    return f"{PREFIX}:s:{channel}", f"{PREFIX}:m:{channel}"


def _evaluate(
    protocol: RedisProtocol, script: str, *args: bytes | str, keys: int
) -> Deferred[Any]:
    """Run a script by its digest, sending its text only when Redis lacks it."""

    def unknown(failure: Failure) -> Deferred[Any]:
        failure.trap(RespError)
        if failure.value.kind != "NOSCRIPT":
            return failure
        return protocol.command(b"EVAL", script, keys, *args)

    return protocol.command(b"EVALSHA", _sha(script), keys, *args).addErrback(unknown)
