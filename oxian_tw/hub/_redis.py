# -*- test-case-name: tests.test_redis_server,tests.test_redis_features -*-
"""
The hub's Redis backend (``--hub redis://host:port/db``): each channel's
epoch, sequence, history, idempotency keys and presence live in Redis, so
every process serving the app shares its channels; each process receives
only the channels its streams follow (SPEC §11.1).

In Redis, for a channel ``C`` (``{C}`` its hash tag, so that all of a
channel's keys are in one slot of a Cluster; ``{``, ``}`` and ``%`` in a
channel's name are escaped):

- ``oxian:{C}:m``: its record (epoch, last ``n``, bytes appended);
  ``oxian:{C}:s``: its history, a Redis Stream of entries ``<n>-0``
  (lines, time, bytes appended so far). The history expires 1 to 1.5
  times the history age after the last publish (its expiry is pushed back
  at most every half age, not on every publish), the record at twice it.
- ``oxian:{C}:i:<key>``: the id a publish with an idempotency key got,
  for `IDEMPOTENCY_WINDOW`.
- ``oxian:{C}:p``, ``oxian:{C}:pz``: who is present (info, leave event)
  and until when, renewed by each process every third of
  ``--hub-presence-ttl``.
- pub/sub channel ``oxian:{C}`` (``:<db>`` after it for a database other
  than 0: pub/sub spans databases): the channel's events (``e<id>\\n<lines>``)
  and presence events (``p<lines>``), to the processes subscribed to it.

A publish is one script on the channel's keys (idempotency, ``n``,
``XADD`` trimming by count, ``PUBLISH``; every 16th also trims by bytes
and age), costing Redis O(1) amortised (``bench/hub_scale.py`` measures
it). A read serves nothing past the bounds, trimmed
yet or not, and resumes only when the event after the client's is still
there. A process
subscribes to a channel's pub/sub when the channel's first stream here
arrives and unsubscribes after the last leaves; the hub core
(`oxian_tw.hub._core`) stitches live events to history by ``n``, so
nothing is lost or delivered twice, and a lost push (pub/sub is at most
once) or a reconnection is caught up from history. The scripts are the
``lua/`` files of this package.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import importlib.resources
from collections.abc import Callable, Hashable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionLost
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
from ._address import RedisAddress
from ._channels import IDEMPOTENCY_WINDOW
from ._client import RedisConnection, RedisProtocol
from ._core import Hub, Range
from ._ids import Position
from ._interface import IBackend
from ._resp import Push, RespError

__all__ = (
    "Nodes",
    "OneRedis",
    "RedisBackend",
    "RedisHub",
    "channel_keys",
    "SLOTS",
    "key_slot",
    "on_connection",
    "routing_key",
    "slot_of",
)

PREFIX = "oxian"

_MESSAGES = frozenset({b"message", b"smessage"})


@functools.cache
def _script(*names: str) -> str:
    lua = importlib.resources.files(__package__) / "lua"
    return "\n".join((lua / f"{name}.lua").read_text() for name in names)


APPEND_SCRIPT = _script("common", "append")
READ_SCRIPT = _script("common", "read")
PRESENCE_SCRIPT = _script("presence")
ABSENT_SCRIPT = _script("absent")
CLAIM_SCRIPT = _script("claim")
SWAP_SCRIPT = _script("swap")


#: Each script's SHA-1 digest, for EVALSHA.
_DIGESTS = {
    script: hashlib.sha1(script.encode()).hexdigest()
    for script in (
        APPEND_SCRIPT,
        READ_SCRIPT,
        PRESENCE_SCRIPT,
        ABSENT_SCRIPT,
        CLAIM_SCRIPT,
        SWAP_SCRIPT,
    )
}
_APPEND_DIGEST = _DIGESTS[APPEND_SCRIPT]

#: Publishes in one script call at most (a call holds Redis: ~1 ms).
BATCH_MAX = 100

#: A publish waiting for its turn to end: channel, body, idempotency key,
#: the Deferred of its position.
_Publish = tuple[str, bytes, "str | None", "Deferred[tuple[Position, bool]]"]


def _tag(channel: str) -> str:
    """``{channel}``, escaped so that the whole name is the hash tag."""
    escaped = channel.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return "{" + escaped + "}"


@functools.lru_cache(maxsize=4096)
def routing_key(channel: str) -> bytes:
    """What a Cluster hashes for every key of ``channel``: its hash tag."""
    return _tag(channel).encode("utf-8")


#: Hash slots of a Redis Cluster.
SLOTS = 16384


def key_slot(key: bytes) -> int:
    """
    The Cluster hash slot of ``key`` (of its hash tag, ``{...}``, when it
    has one): CRC16 "XMODEM", which is the standard library's
    ``binascii.crc_hqx`` from 0 (no hand-written CRC, no dependency).
    """
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return binascii.crc_hqx(key, 0) % SLOTS


@functools.lru_cache(maxsize=4096)
def slot_of(channel: str) -> int:
    """The Cluster hash slot of ``channel``'s keys (they share its tag)."""
    return key_slot(routing_key(channel))


@functools.lru_cache(maxsize=4096)
def _append_keys(channel: str, db: int) -> tuple[str, str, str, str]:
    """What a publish names: record, history, idempotency prefix, pub/sub."""
    keys = channel_keys(channel, db)
    return keys["meta"], keys["stream"], keys["idempotency"], keys["pubsub"]


@functools.lru_cache(maxsize=4096)
def channel_keys(channel: str, db: int = 0) -> dict[str, str]:
    """A channel's keys and pub/sub channel (see the module docstring)."""
    base = f"{PREFIX}:{_tag(channel)}"
    return {
        "meta": f"{base}:m",
        "stream": f"{base}:s",
        "presence": f"{base}:p",
        "expiry": f"{base}:pz",
        "idempotency": f"{base}:i:",
        "pubsub": base if not db else f"{base}:{db}",
    }


class Nodes(Protocol):
    """
    The Redis servers a `RedisBackend` talks to: one (`OneRedis`) or a
    Cluster's primaries (`oxian_tw.hub._cluster.ClusterNodes`), each
    command sent to the one that holds the channel.
    """

    #: For the log (no credentials).
    description: str
    #: The database (pub/sub names carry it: pub/sub spans databases).
    db: int
    #: Sharded pub/sub (``SPUBLISH``/``SSUBSCRIBE``, a Cluster) or not.
    sharded: bool

    @property
    def received(self) -> int:
        """Bytes received from every server since the first `start`."""

    def start(
        self,
        on_push: Callable[[Push], None],
        on_lost: Callable[[Callable[[bytes], bool] | None], None],
        on_ready: Callable[[], None],
    ) -> None:
        """
        Connect: pushes go to ``on_push``; ``on_lost(which)`` says that the
        subscriptions whose pub/sub names ``which`` accepts (``None``: all)
        were lost (a reconnection, a slot moved) and must be made again;
        ``on_ready`` that a server answers again.
        """

    def stop(self) -> Deferred[None]:
        """Disconnect from every server."""

    def run(
        self, channel: str, call: Callable[..., Deferred[Any]], *args: Any
    ) -> Deferred[Any]:
        """
        ``call(protocol, *args)`` on the connection to the server holding
        ``channel``'s keys (they share a slot: `routing_key`), once ready.
        """

    def batch_of(self, channel: str) -> Hashable:
        """
        Publishes on channels with equal values may share a script call
        (they are on one server, as far as is known).
        """


class OneRedis:
    """One Redis server (`Nodes`): every command on one connection."""

    db: int
    sharded = False

    def __init__(
        self,
        address: RedisAddress,
        clock: Callable[[], Any],
        connect: Callable[..., RedisConnection] = RedisConnection,
    ) -> None:
        self.address = address
        self.description = str(address)
        self.db = address.db
        self._clock = clock
        self._connect = connect
        self._connection: RedisConnection | None = None
        self._was_ready = False
        self._received = 0
        self._on_push: Callable[[Push], None] = _ignore
        self._on_lost: Callable[[Callable[[bytes], bool] | None], None] = _ignore
        self._on_ready: Callable[[], None] = _nothing

    @property
    def received(self) -> int:
        connection = self._connection
        return connection.received[0] if connection is not None else self._received

    def start(
        self,
        on_push: Callable[[Push], None],
        on_lost: Callable[[Callable[[bytes], bool] | None], None],
        on_ready: Callable[[], None],
    ) -> None:
        self._on_push, self._on_lost, self._on_ready = on_push, on_lost, on_ready
        self._started()

    def stop(self) -> Deferred[None]:
        connection, self._connection = self._connection, None
        self._was_ready = False
        if connection is None:
            return succeed(None)
        self._received = connection.received[0]
        stopped: Deferred[None] = connection.stop()
        return stopped

    def _started(self) -> RedisConnection:
        if self._connection is None:
            self._connection = self._connect(
                self.address,
                self._clock(),
                on_push=self._on_push,
                prepare=_prepared,
                on_ready=self._ready,
            )
            self._connection.start()
        return self._connection

    def _ready(self, protocol: RedisProtocol) -> None:
        self._on_ready()
        if self._was_ready:
            # Subscriptions (and pushes) were lost with the old connection.
            self._on_lost(None)
        self._was_ready = True

    def run(
        self, channel: str, call: Callable[..., Deferred[Any]], *args: Any
    ) -> Deferred[Any]:
        connection = self._connection
        if connection is not None:
            protocol = connection.protocol
            if protocol is not None:
                return call(protocol, *args)
        return on_connection(self._started(), call, *args)

    def batch_of(self, channel: str) -> Hashable:
        return None


def on_connection(
    connection: RedisConnection, call: Callable[..., Deferred[Any]], *args: Any
) -> Deferred[Any]:
    """``call(protocol, *args)`` on ``connection``'s ready protocol, or its first."""
    if connection.protocol is not None:
        return call(connection.protocol, *args)
    if connection.was_ready:
        return fail(ConnectionLost("not connected to Redis"))
    return connection.first_attempt().addCallback(call, *args)


@implementer(IBackend)
class RedisBackend:
    """
    Channels in Redis (see the module docstring), on one server or a
    Cluster (``nodes``).

    :param clock: returns the reactor (``IReactorTime``), resolved late.
    """

    _log = Logger()

    def __init__(
        self,
        nodes: Nodes,
        clock: Callable[[], Any],
        *,
        history: int = HUB_HISTORY,
        history_bytes: int = HUB_HISTORY_BYTES,
        history_age: float = HUB_HISTORY_AGE,
    ) -> None:
        self.sink: Any = None
        self.nodes = nodes
        self.description = nodes.description
        self._clock = clock
        self._limits = (str(history), str(history_bytes), str(int(history_age * 1000)))
        self._publish_command = b"SPUBLISH" if nodes.sharded else b"PUBLISH"
        #: pub/sub channel -> channel, for what this process follows.
        self._followed: dict[bytes, str] = {}
        self._failing = False
        self._started = False
        #: Publishes of this turn, sent when it ends (`_flush`).
        self._batch: list[_Publish] | None = None
        self._flushing: Any = None

    # Connection.

    def start(self) -> None:
        if not self._started:
            self._started = True
            self.nodes.start(self._pushed, self._lost, self._ready)

    def stop(self) -> Deferred[None]:
        self._started = False
        flushing, self._flushing = self._flushing, None
        batch, self._batch = self._batch, None
        if flushing is not None and flushing.active():
            flushing.cancel()
        for publish in batch or ():
            publish[3].errback(HubUnavailable())
        return self.nodes.stop()

    def _ready(self) -> None:
        self._failing = False

    def _lost(self, which: Callable[[bytes], bool] | None) -> None:
        lost = [pubsub for pubsub in self._followed if which is None or which(pubsub)]
        channels = [self._followed.pop(pubsub) for pubsub in lost]
        if channels:
            # The core follows them again, catching up.
            self.sink.lost(channels)

    def _on(
        self, channel: str, run: Callable[..., Deferred[Any]], *args: Any
    ) -> Deferred[Any]:
        """``run(protocol, *args)`` on the server holding ``channel``."""
        if not self._started:
            self.start()
        return self.nodes.run(channel, run, *args)

    # IBackend.

    def append(
        self, channel: str, body: bytes, idempotency_key: str | None
    ) -> Deferred[tuple[Position, bool]]:
        # Held until the turn ends: a turn's publishes go in one script call
        # per server (Redis's cost of a call and ours of a command, paid once).
        appended: Deferred[tuple[Position, bool]] = Deferred()
        batch = self._batch
        if batch is None:
            batch = self._batch = []
            self._flushing = self._clock().callLater(0, self._flush)
        batch.append((channel, body, idempotency_key, appended))
        return appended

    def _flush(self) -> None:
        batch, self._batch, self._flushing = self._batch, None, None
        if not batch:
            return
        groups: dict[Hashable, list[_Publish]] = {}
        batch_of = self.nodes.batch_of
        for publish in batch:
            groups.setdefault(batch_of(publish[0]), []).append(publish)
        for group in groups.values():
            for start in range(0, len(group), BATCH_MAX):
                self._send(group[start : start + BATCH_MAX], self.nodes.sharded)

    def _send(self, part: list[_Publish], across_slots: bool) -> None:
        """
        One script call for ``part``; ``across_slots``: its channels may
        be in several slots of one Cluster node.
        """
        sent = self._on(part[0][0], self._append, part, across_slots)
        sent.addCallbacks(
            _appended,
            self._not_appended,
            callbackArgs=(part,),
            errbackArgs=(part, across_slots),
        )

    def _append(
        self, protocol: RedisProtocol, part: list[_Publish], across_slots: bool
    ) -> Deferred[Any]:
        db = self.nodes.db
        tail: list[bytes | str] = []
        for channel, body, key, _ in part:
            meta, stream, idempotency, pubsub = _append_keys(channel, db)
            tail += (
                meta,
                stream,
                idempotency if key is None else idempotency + key,
                body,
                pubsub,
                "0" if key is None else "1",
            )
        # Declared: every key, or (across a node's slots) the first
        # publish's, which route the call.
        keys = (
            tail[:3]
            if across_slots
            else [name for at in range(0, len(tail), 6) for name in tail[at : at + 3]]
        )
        args = (
            len(keys),
            *keys,
            *self._limits,
            self._publish_command,
            str(int(IDEMPOTENCY_WINDOW * 1000)),
            "1" if across_slots else "0",
            *tail,
        )
        reply = protocol.command(b"EVALSHA", _APPEND_DIGEST, *args)
        # One errback (see `_append_failed`).
        return reply.addErrback(_append_failed, protocol, protocol.open, args)

    def _not_appended(
        self, failure: Failure, part: list[_Publish], across_slots: bool
    ) -> None:
        error = failure.value
        if across_slots and isinstance(error, RespError) and _refused_across(error):
            # Refused before it wrote anything (a slot moved or migrates):
            # again, one call per slot, each routed (MOVED, ASK) on its own.
            slots: dict[int, list[_Publish]] = {}
            for publish in part:
                slots.setdefault(slot_of(publish[0]), []).append(publish)
            for group in slots.values():
                self._send(group, False)
            return
        try:
            self._unavailable(failure)
        except Exception:
            failed = Failure()
        for publish in part:
            publish[3].errback(failed)

    def read(
        self,
        channel: str,
        mode: str,
        after: Position | None = None,
        count: int = 0,
        last: bytes | None = None,
    ) -> Deferred[Range]:
        check = hashlib.sha1(last).hexdigest() if last is not None else ""
        read = self._on(channel, self._read, channel, mode, after, count, check)
        return read.addCallback(_range)

    def _read(
        self,
        protocol: RedisProtocol,
        channel: str,
        mode: str,
        after: Position | None,
        count: int,
        check: str,
    ) -> Deferred[Any]:
        keys = self._keys(channel)
        return _evaluate(
            protocol,
            READ_SCRIPT,
            keys["meta"],
            keys["stream"],
            mode,
            after.epoch if after is not None else "",
            str(after.n) if after is not None else "0",
            str(count),
            self._limits[2],
            self._limits[1],
            self._limits[0],
            check,
            keys=2,
        )

    def follow(self, channel: str) -> Deferred[None]:
        pubsub = self._keys(channel)["pubsub"].encode("utf-8")
        self._followed[pubsub] = channel
        return self._on(channel, self._subscribe, pubsub)

    def _subscribe(self, protocol: RedisProtocol, pubsub: bytes) -> Deferred[None]:
        return protocol.subscribe(pubsub, self.nodes.sharded)

    def unfollow(self, channel: str) -> None:
        pubsub = self._keys(channel)["pubsub"].encode("utf-8")
        self._followed.pop(pubsub, None)
        if self._started:
            # Unconfirmed when the connection is gone: so is the subscription.
            self.nodes.run(
                channel, _unsubscribe, pubsub, self.nodes.sharded
            ).addErrback(_ignore)

    def announce(self, channel: str, wire: bytes) -> Deferred[Any]:
        keys = self._keys(channel)
        return self._on(
            channel, _command, self._publish_command, keys["pubsub"], b"p" + wire
        )

    def lease(
        self, channel: str, entries: list[tuple[str, str, bytes, bytes]], ttl: float
    ) -> Deferred[Any]:
        args: list[str | bytes] = []
        for presence_id, info, join, leave in entries:
            args += [presence_id, info.encode("utf-8") + b"\n" + leave, join]
        return self._presence(channel, "0", args, ttl)

    def release(self, channel: str, presence_id: str, leave: bytes) -> Deferred[Any]:
        keys = self._keys(channel)
        return self._on(
            channel,
            _evaluate_on,
            ABSENT_SCRIPT,
            keys["presence"],
            keys["expiry"],
            keys["pubsub"],
            self._publish_command,
            presence_id,
            leave,
            2,
        )

    def present(self, channel: str) -> Deferred[dict[str, str]]:
        asked = self._presence(channel, "1", [], 0)
        return asked.addCallbacks(_presence_map, self._presence_unavailable)

    def present_count(self, channel: str) -> Deferred[int]:
        asked = self._presence(channel, "2", [], 0)
        return asked.addCallbacks(int, self._presence_unavailable)

    def fetch(self, channel: str, name: str) -> Deferred[str | None]:
        asked = self._on(channel, _command, b"GET", self._record_key(channel, name))
        return asked.addCallbacks(_text_or_none, self._record_unavailable)

    def claim(
        self, channel: str, name: str, value: str, ttl: float
    ) -> Deferred[str | None]:
        asked = self._on(
            channel,
            _evaluate_on,
            CLAIM_SCRIPT,
            self._record_key(channel, name),
            value,
            str(max(1, int(ttl * 1000))),
            1,
        )
        return asked.addCallbacks(_text_or_none, self._record_unavailable)

    def swap(
        self, channel: str, name: str, expected: str, value: str, ttl: float
    ) -> Deferred[bool]:
        asked = self._on(
            channel,
            _evaluate_on,
            SWAP_SCRIPT,
            self._record_key(channel, name),
            expected,
            value,
            str(max(1, int(ttl * 1000))),
            1,
        )
        return asked.addCallbacks(bool, self._record_unavailable)

    def _record_key(self, channel: str, name: str) -> str:
        # Beside the channel's own keys (its slot on a Cluster).
        return f"{self._keys(channel)['meta']}:r:{name}"

    def _record_unavailable(self, failure: Failure) -> Failure:
        self._log.warn("hub: a record is unavailable ({why})", why=failure.value)
        raise HubUnavailable()

    def _presence(
        self, channel: str, want: str, args: list[str | bytes], ttl: float
    ) -> Deferred[Any]:
        keys = self._keys(channel)
        asked = self._on(
            channel,
            _evaluate_on,
            PRESENCE_SCRIPT,
            keys["presence"],
            keys["expiry"],
            str(int(ttl * 1000)),
            keys["pubsub"],
            self._publish_command,
            want,
            *args,
            2,
        )
        return asked

    # Internals.

    @property
    def received(self) -> int:
        """Bytes received from Redis since this backend started."""
        return self.nodes.received

    def _keys(self, channel: str) -> dict[str, str]:
        return channel_keys(channel, self.nodes.db)

    def _pushed(self, push: Push) -> None:
        if len(push) != 3 or push[0] not in _MESSAGES:
            return
        channel = self._followed.get(push[1])
        if channel is None:
            return
        message = push[2]
        kind = message[:1]
        if kind == b"p":
            self.sink.announced(channel, message[1:])
            return
        head, _, body = message[1:].partition(b"\n")
        epoch, _, n = head.partition(b"-")
        if kind != b"e" or len(epoch) != 10 or not n.isdigit():
            self._log.warn(
                "hub: ignored a malformed message on {channel}", channel=channel
            )
            return
        self.sink.event(channel, Position(epoch.decode("ascii"), int(n)), body)

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
                address=self.description,
                why=cause or failure.value,
            )
        if unknown:
            raise HubTimeout()
        raise HubUnavailable()

    def _presence_unavailable(self, failure: Failure) -> Failure:
        self._log.warn(
            "hub: presence unavailable ({why})",
            why=failure.value,
        )
        raise HubUnavailable()


class RedisHub(Hub):
    """
    The hub with its channels in one Redis (``--hub redis://...``).

    :param address: where Redis is.
    :param clock: returns the reactor, resolved late.
    :param connect: builds the connection (tests pass a fake).
    """

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
        backend = RedisBackend(
            OneRedis(address, clock, connect),
            clock,
            history=history,
            history_bytes=history_bytes,
            history_age=history_age,
        )
        super().__init__(backend, clock, history=history, presence_ttl=presence_ttl)


class _Sent(Exception):
    """A publish that reached Redis's connection and then failed."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _prepared(protocol: RedisProtocol) -> Deferred[None]:
    """Nothing to prepare: subscriptions are per channel, made when followed."""
    return succeed(None)


def _append_failed(
    failure: Failure,
    protocol: RedisProtocol,
    sent: bool,
    args: tuple[bytes | str | int, ...] | None,
) -> Deferred[Any] | Failure:
    """
    A publish's script failed: Redis lacked it (``NOSCRIPT``: sent in full,
    once), refused it (an error reply: not run), or it was sent and its
    answer never came (`_Sent`: it may have run).
    """
    error = failure.value
    if isinstance(error, RespError):
        if error.kind == "NOSCRIPT" and args is not None:
            again = protocol.command(b"EVAL", APPEND_SCRIPT, *args)
            return again.addErrback(_append_failed, protocol, sent, None)
        return failure
    if sent:
        raise _Sent(error or ConnectionLost())
    return failure


def _refused_across(error: RespError) -> bool:
    """
    Whether a call across a node's slots was refused before it wrote:
    a key the node does not serve (the script touches every key first).
    """
    text = str(error)
    return "non local key" in text or error.kind == "CROSSSLOT"


def _appended(reply: list[Any], part: list[_Publish]) -> None:
    for index, publish in enumerate(part):
        epoch, n, earlier = reply[3 * index : 3 * index + 3]
        publish[3].callback((Position(epoch.decode("ascii"), int(n)), bool(earlier)))


def _range(reply: list[Any]) -> Range:
    epoch = reply[0].decode("ascii")
    head = Position(epoch, int(reply[1]))
    rest = reply[3:]
    events = [(int(n), body) for n, body in zip(rest[::2], rest[1::2], strict=True)]
    return Range(head, reset=bool(int(reply[2])), events=events)


def _presence_map(reply: list[Any]) -> dict[str, str]:
    if isinstance(reply, dict):
        pairs = list(reply.items())
    else:
        pairs = list(zip(reply[::2], reply[1::2], strict=True))
    return {
        sid.decode("utf-8"): value.partition(b"\n")[0].decode("utf-8")
        for sid, value in pairs
    }


def _ignore(_: object) -> None:
    """Nothing to do with it (a callback or errback)."""


def _nothing() -> None:
    """Nothing to do."""


def _unsubscribe(
    protocol: RedisProtocol, pubsub: bytes, sharded: bool
) -> Deferred[None]:
    return protocol.unsubscribe(pubsub, sharded)


def _text_or_none(reply: Any) -> str | None:
    return reply.decode("utf-8") if isinstance(reply, bytes) else None


def _command(protocol: RedisProtocol, *args: bytes | str) -> Deferred[Any]:
    return protocol.command(*args)


def _evaluate_on(protocol: RedisProtocol, script: str, *args: Any) -> Deferred[Any]:
    """`_evaluate` with the key count last (for `Nodes.run`)."""
    *rest, keys = args
    return _evaluate(protocol, script, *rest, keys=keys)


def _evaluate(
    protocol: RedisProtocol, script: str, *args: bytes | str, keys: int
) -> Deferred[Any]:
    """Run a script by its digest, sending its text only when Redis lacks it."""
    return protocol.command(b"EVALSHA", _DIGESTS[script], keys, *args).addErrback(
        _send_script, protocol, script, keys, args
    )


def _send_script(
    failure: Failure,
    protocol: RedisProtocol,
    script: str,
    keys: int,
    args: tuple[bytes | str, ...],
) -> Deferred[Any] | Failure:
    """Redis does not know the script yet (``NOSCRIPT``): send its text."""
    error = failure.value
    if not isinstance(error, RespError) or error.kind != "NOSCRIPT":
        return failure
    return protocol.command(b"EVAL", script, keys, *args)
