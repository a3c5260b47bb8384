# -*- test-case-name: tests.test_cluster,tests.test_cluster_server -*-
"""
The hub on a Redis Cluster (``--hub redis+cluster://h1:7000,h2:7001``):
the Redis backend's commands, each sent to the primary that holds the
channel's hash slot (all of a channel's keys, and its sharded pub/sub
channel, carry the channel as their hash tag: one slot).

- The slot map is read (``CLUSTER SLOTS``) from the first node given that
  answers, and read again on ``MOVED``, when a node is lost (every
  `REFRESH_EVERY` seconds until its slots have a primary that answers) and
  when a node unsubscribes this process from a channel (its slot moved).
- ``MOVED`` sends the command again to the node named (at most
  `MAX_REDIRECTS` times); ``ASK`` sends ``ASKING`` and the command there,
  once, during a slot's migration; ``TRYAGAIN`` (a channel's keys half
  migrated) sends it again every `TRY_AGAIN_AFTER` seconds, at most
  `TRY_AGAIN_TIMES` times.
- Live events use sharded pub/sub (``SSUBSCRIBE``/``SPUBLISH``, Redis or
  Valkey 7 and later) on the slot's primary. When a slot changes primary
  (a failover, a migration), the channels of that slot are followed again
  on the new one and caught up from history by the hub core; if the new
  primary lacks events the old one had acknowledged (replication is
  asynchronous), the channel's next read sees its position go back or its
  last event differ, and the channel gets a new epoch: a ``reset``, never a
  silent hole.

A slot is ``CRC16(key) mod 16384`` (`oxian_tw.hub._redis.key_slot`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._config import (
    HUB_HISTORY,
    HUB_HISTORY_AGE,
    HUB_HISTORY_BYTES,
    HUB_PRESENCE_TTL,
)
from ._address import ClusterAddress
from ._client import RedisConnection, RedisProtocol
from ._core import Hub
from ._redis import SLOTS, RedisBackend, key_slot, on_connection, routing_key
from ._resp import Push, RespError

__all__ = (
    "MAX_REDIRECTS",
    "REFRESH_EVERY",
    "SLOTS",
    "ClusterHub",
    "ClusterNodes",
    "key_slot",
)

#: ``MOVED``/``ASK`` redirections one command follows before failing.
MAX_REDIRECTS = 5
#: Seconds between two reads of the slot map while a primary is lost.
REFRESH_EVERY = 1.0
#: Seconds before a command refused with ``TRYAGAIN`` is sent again, and
#: how many times at most (5 s: a migration of a channel's few keys takes
#: milliseconds).
TRY_AGAIN_AFTER = 0.05
TRY_AGAIN_TIMES = 100

Node = tuple[str, int]


def _prepared(protocol: RedisProtocol) -> Deferred[None]:
    return succeed(None)


def _ignore(_: object) -> None:
    """Nothing to do with it."""


class ClusterNodes:
    """
    A Cluster's primaries (`oxian_tw.hub._redis.Nodes`): one connection each,
    a command routed by its key's slot.

    :param clock: returns the reactor, resolved late.
    :param connect: builds a node's connection (tests pass a fake).
    """

    _log = Logger()
    db = 0
    sharded = True

    def __init__(
        self,
        address: ClusterAddress,
        clock: Callable[[], Any],
        connect: Callable[..., RedisConnection] = RedisConnection,
    ) -> None:
        self.address = address
        self.description = str(address)
        self._clock = clock
        self._connect = connect
        #: The primary of each slot (``None``: not known yet, or none).
        self._slots: list[Node | None] = [None] * SLOTS
        self._mapped = False
        self._connections: dict[Node, RedisConnection] = {}
        #: Nodes whose connection was ready once (a new one lost subscriptions).
        self._was_ready: set[Node] = set()
        self._waiting: list[Deferred[None]] = []
        self._refreshing = False
        self._refresh_later: IDelayedCall | None = None
        #: A command failed for want of a map (followed channels wait).
        self._failed = False
        self._running = False
        self._received = 0
        self._on_push: Callable[[Push], None] = _ignore
        self._on_lost: Callable[[Callable[[bytes], bool] | None], None] = _ignore
        self._on_ready: Callable[[], None] = lambda: None

    # Nodes.

    @property
    def received(self) -> int:
        return self._received + sum(c.received[0] for c in self._connections.values())

    def start(
        self,
        on_push: Callable[[Push], None],
        on_lost: Callable[[Callable[[bytes], bool] | None], None],
        on_ready: Callable[[], None],
    ) -> None:
        self._on_push, self._on_lost, self._on_ready = on_push, on_lost, on_ready
        if not self._running:
            self._running = True
            self._refresh()

    def stop(self) -> Deferred[None]:
        self._running = False
        self._mapped = False
        self._slots = [None] * SLOTS
        self._was_ready.clear()
        later, self._refresh_later = self._refresh_later, None
        if later is not None and later.active():
            later.cancel()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(ConnectionLost("the hub stopped"))
        connections = list(self._connections.values())
        self._connections.clear()
        stops = [self._stop(c) for c in connections]
        done: Deferred[None] = Deferred()
        if not stops:
            return succeed(None)
        left = [len(stops)]

        def one(_: object) -> None:
            left[0] -= 1
            if not left[0]:
                done.callback(None)

        for stopped in stops:
            stopped.addBoth(one)
        return done

    def run(
        self, channel: str, call: Callable[..., Deferred[Any]], *args: Any
    ) -> Deferred[Any]:
        key = routing_key(channel)
        if not self._mapped:
            mapped: Deferred[None] = Deferred()
            self._waiting.append(mapped)
            return mapped.addCallback(lambda _: self.run(channel, call, *args))
        return self._routed(key, call, args, 0, 0)

    def batch_of(self, channel: str) -> Hashable:
        # The primary the slot map names (or the slot, unmapped): a call
        # across its slots is refused before writing if the map is stale.
        slot = key_slot(routing_key(channel))
        node = self._slots[slot] if self._mapped else None
        return slot if node is None else node

    # Routing.

    def _routed(
        self,
        key: bytes,
        call: Callable[..., Deferred[Any]],
        args: tuple[Any, ...],
        redirects: int,
        tries: int,
    ) -> Deferred[Any]:
        node = self._slots[key_slot(key)]
        if node is None:
            self._refresh()
            return fail(ConnectionLost("no Redis Cluster node serves this slot"))
        sent = on_connection(self._connection(node), call, *args)
        return sent.addErrback(self._redirected, key, call, args, redirects, tries)

    def _redirected(
        self,
        failure: Failure,
        key: bytes,
        call: Callable[..., Deferred[Any]],
        args: tuple[Any, ...],
        redirects: int,
        tries: int,
    ) -> Deferred[Any] | Failure:
        error = failure.value
        if not isinstance(error, RespError) or redirects >= MAX_REDIRECTS:
            return failure
        kind = error.kind
        if kind == "TRYAGAIN" and tries < TRY_AGAIN_TIMES:
            # A multi-key command during a slot's migration, not run: again
            # shortly.
            again: Deferred[Any] = deferLater(
                self._clock(),
                TRY_AGAIN_AFTER,
                self._routed,
                key,
                call,
                args,
                redirects,
                tries + 1,
            )
            return again
        if kind not in ("MOVED", "ASK"):
            return failure
        try:
            _, slot, where = str(error).split(" ")
            host, _, port = where.rpartition(":")
            node = (host or self._any_host(), int(port))
        except ValueError:
            return failure
        if kind == "MOVED":
            # The map is stale: this slot now, the rest read again.
            self._slots[int(slot)] = node
            self._refresh()
            return self._routed(key, call, args, redirects + 1, tries)
        # ASK: this one command, there, during a migration.
        asked = on_connection(self._connection(node), _asking, call, args)
        return asked.addErrback(self._redirected, key, call, args, redirects + 1, tries)

    def _any_host(self) -> str:
        return self.address.seeds[0][0]

    # Connections.

    def _connection(self, node: Node) -> RedisConnection:
        connection = self._connections.get(node)
        if connection is None:
            connection = self._connections[node] = self._connect(
                self.address.node(*node),
                self._clock(),
                on_push=lambda push: self._pushed(node, push),
                prepare=_prepared,
                on_ready=lambda protocol: self._ready(node, protocol),
            )
            connection.start()
        return connection

    def _stop(self, connection: RedisConnection) -> Deferred[None]:
        self._received += connection.received[0]
        connection.received[0] = 0
        stopped: Deferred[None] = connection.stop()
        return stopped

    def _ready(self, node: Node, protocol: RedisProtocol) -> None:
        self._on_ready()
        protocol.lost.addCallback(self._node_lost, node)
        if node in self._was_ready:
            # Reconnected: its subscriptions were lost with the old connection.
            self._on_lost(lambda key: self._slots[key_slot(key)] == node)
        self._was_ready.add(node)
        if not self._mapped or self._refresh_later is not None:
            self._refresh()

    def _node_lost(self, why: BaseException, node: Node) -> None:
        if self._running and node in self._connections:
            # A failover promotes a replica: the map tells when.
            self._refresh_soon()

    def _pushed(self, node: Node, push: Push) -> None:
        if push[0] == b"sunsubscribe" and len(push) >= 2:
            # Redis unsubscribed us: the slot moved (a failover, a
            # migration). Followed again where the map now puts it.
            channel = push[1]
            self._refresh()
            self._on_lost(lambda key: key == channel)
            return
        self._on_push(push)

    # The slot map.

    def _refresh_soon(self) -> None:
        if not self._running:
            return
        if self._refresh_later is None or not self._refresh_later.active():
            self._refresh_later = self._clock().callLater(
                REFRESH_EVERY, self._refresh_again
            )

    def _refresh_again(self) -> None:
        self._refresh_later = None
        self._refresh(waited=True)

    def _refresh(self, waited: bool = False) -> None:
        """
        Read the slot map from a node that answers (if not reading already);
        ``waited``: none answered for `REFRESH_EVERY` seconds.
        """
        if self._refreshing or not self._running:
            return
        ready = [c.protocol for c in self._connections.values() if c.protocol]
        if not ready:
            # None answers yet: connect to the seeds (and the primaries
            # known); the first ready one reads the map (`_ready`).
            for node in (*self.address.seeds, *self._primaries()):
                self._connection(node)
            self._refresh_soon()
            if waited and not self._mapped:
                # Commands waiting for a map fail (503) rather than wait on.
                self._fail_waiting()
            return
        self._refreshing = True
        asked: Deferred[Any] = ready[0].command(b"CLUSTER", b"SLOTS")
        asked.addCallbacks(self._mapped_now, self._not_mapped)

    def _fail_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        if waiting:
            self._failed = True
        for d in waiting:
            d.errback(ConnectionLost("no Redis Cluster node answers yet"))

    def _not_mapped(self, failure: Failure) -> None:
        self._refreshing = False
        self._log.warn(
            "hub: reading the slot map of {cluster} failed: {why}",
            cluster=self.description,
            why=failure.value,
        )
        self._refresh_soon()
        if not self._mapped:
            self._fail_waiting()

    def _mapped_now(self, reply: list[Any]) -> None:
        self._refreshing = False
        if not self._running:
            return
        slots: list[Node | None] = [None] * SLOTS
        for entry in reply:
            start, end, primary = int(entry[0]), int(entry[1]), entry[2]
            host = primary[0].decode("utf-8") if primary[0] else ""
            if host in ("", "?"):
                host = self._any_host()
            node = (host, int(primary[1]))
            slots[start : end + 1] = [node] * (end - start + 1)
        before, self._slots = self._slots, slots
        first = not self._mapped
        self._mapped = True
        if first:
            self._log.info(
                "hub: Redis Cluster {cluster}: {primaries} primaries",
                cluster=self.description,
                primaries=len(self._primaries()),
            )
        # Connections to nodes that are no primary now (a seed that is a
        # replica, a failed primary come back as one) are closed.
        primaries = self._primaries()
        for node in list(self._connections):
            if node not in primaries:
                self._stop(self._connections.pop(node))
                self._was_ready.discard(node)
        for node in primaries:
            self._connection(node)
        if first:
            if self._failed:
                self._failed = False
                self._on_lost(None)
        else:
            moved = {s for s in range(SLOTS) if slots[s] != before[s]}
            if moved:
                self._log.info(
                    "hub: {count} slots of {cluster} have a new primary; "
                    "following their channels there",
                    count=len(moved),
                    cluster=self.description,
                )
                self._on_lost(lambda key: key_slot(key) in moved)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)
        if (
            any(
                self._connections[node].protocol is None
                and self._connections[node].was_ready
                for node in primaries
            )
            or None in slots
        ):
            # A primary is lost (or slots have none): until a replica takes over.
            self._refresh_soon()

    def _primaries(self) -> set[Node]:
        return {node for node in self._slots if node is not None}


def _asking(
    protocol: RedisProtocol, call: Callable[..., Deferred[Any]], args: tuple[Any, ...]
) -> Deferred[Any]:
    result: Deferred[Any] = call(_Asking(protocol), *args)
    return result


class _Asking:
    """
    A node's protocol for a command sent there after ``ASK``: each of its
    commands (a script's ``EVAL`` after ``NOSCRIPT`` too) preceded by
    ``ASKING``, which holds for one command only.
    """

    __slots__ = ("_protocol",)

    def __init__(self, protocol: RedisProtocol) -> None:
        self._protocol = protocol

    @property
    def open(self) -> bool:
        return self._protocol.open

    def _ask(self) -> None:
        self._protocol.command(b"ASKING").addErrback(_ignore)

    def command(self, *args: bytes | str | int) -> Deferred[Any]:
        self._ask()
        return self._protocol.command(*args)

    def subscribe(self, channel: bytes, sharded: bool = False) -> Deferred[None]:
        self._ask()
        return self._protocol.subscribe(channel, sharded)

    def unsubscribe(self, channel: bytes, sharded: bool = False) -> Deferred[None]:
        self._ask()
        return self._protocol.unsubscribe(channel, sharded)


class ClusterHub(Hub):
    """
    The hub with its channels in a Redis Cluster
    (``--hub redis+cluster://...``).

    :param address: nodes to discover it from.
    :param clock: returns the reactor, resolved late.
    :param connect: builds a node's connection (tests pass a fake).
    """

    def __init__(
        self,
        address: ClusterAddress,
        clock: Callable[[], Any],
        *,
        history: int = HUB_HISTORY,
        history_bytes: int = HUB_HISTORY_BYTES,
        history_age: float = HUB_HISTORY_AGE,
        presence_ttl: float = HUB_PRESENCE_TTL,
        connect: Callable[..., RedisConnection] = RedisConnection,
    ) -> None:
        backend = RedisBackend(
            ClusterNodes(address, clock, connect),
            clock,
            history=history,
            history_bytes=history_bytes,
            history_age=history_age,
        )
        super().__init__(backend, clock, history=history, presence_ttl=presence_ttl)
