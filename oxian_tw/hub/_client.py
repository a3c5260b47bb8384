# -*- test-case-name: tests.test_redis -*-
"""
A small Redis client for the hub: one RESP3 connection that runs commands
(replies in order) and receives pub/sub pushes on the same socket, kept up
by a ``ClientService`` with backoff.

One connection for both matters: Redis writes a command's reply and the
pushes published around it to one socket in the order it ran them, so the
hub can tell which live events a replay already holds.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._address import RedisAddress
from ._resp import ProtocolError, Push, RespError, RespParser, encode_command

#: Seconds before the first reconnection attempt and at most between two.
RETRY_FIRST = 0.2
RETRY_MAX = 5.0
CONNECT_TIMEOUT = 5.0
#: Seconds Redis may answer nothing while a reply is awaited: then every
#: command awaiting one fails (a publish with 504: it may have run). Checked
#: every half of it, so a stall is noticed after 5 to 7.5 s.
REPLY_TIMEOUT = 5.0


_LOST = Failure(ConnectionLost())

# Pub/sub confirmations (RESP3 pushes): the protocol's own business,
# except an unsubscription nobody asked for (a Cluster's slot moved away).
_CONFIRMATIONS = frozenset(
    {b"subscribe", b"ssubscribe", b"unsubscribe", b"sunsubscribe"}
)


class _Confirmation:
    """
    A (un)subscription in the reply queue: Redis answers it in order, with a
    push in RESP3 (or an error reply, e.g. ``MOVED`` on a Cluster).
    """

    __slots__ = ("kind", "channel", "deferred")

    def __init__(self, kind: bytes, channel: bytes) -> None:
        self.kind = kind
        self.channel = channel
        self.deferred: Deferred[None] = Deferred()


class RedisProtocol(Protocol):
    """
    Commands whose replies come back in order, and pushes (pub/sub
    messages) handed to ``on_push`` as they arrive between them.
    """

    _log = Logger()

    def __init__(
        self,
        on_push: Callable[[Push], None],
        counted: list[int] | None = None,
        on_made: Callable[[RedisProtocol], None] | None = None,
    ) -> None:
        self._on_push = on_push
        self._on_made = on_made
        #: Bytes received, added to ``counted[0]`` (shared by a connection's
        #: successive protocols).
        self._counted = counted if counted is not None else [0]
        self._parser = RespParser()
        self._replies: collections.deque[Deferred[Any] | _Confirmation] = (
            collections.deque()
        )
        self._lost: Failure | None = None
        #: Fires with why (an exception) once the connection is lost.
        self.lost: Deferred[BaseException] = Deferred()

    def connectionMade(self) -> None:
        if self._on_made is not None:
            self._on_made(self)

    @property
    def waiting(self) -> bool:
        """Whether a reply (or a subscription's confirmation) is awaited."""
        return bool(self._replies)

    def time_out(self) -> None:
        """
        Fail every command awaiting its reply (``CancelledError``); the
        replies, if they come, are dropped in order.
        """
        for waiting in list(self._replies):
            deferred = (
                waiting.deferred if isinstance(waiting, _Confirmation) else waiting
            )
            if not deferred.called:
                deferred.cancel()

    @property
    def open(self) -> bool:
        """Whether a command written now goes to Redis."""
        return self._lost is None and self.transport is not None

    def command(self, *args: bytes | str | int) -> Deferred[Any]:
        """
        Run one command: a Deferred firing with its reply, failing with
        `RespError` for an error reply or ``ConnectionLost``.
        """
        if not self.open:
            return fail(ConnectionLost("not connected to Redis"))
        reply: Deferred[Any] = Deferred()
        self._replies.append(reply)
        self._write(encode_command(*args))
        return reply

    def subscribe(self, channel: bytes, sharded: bool = False) -> Deferred[None]:
        """
        ``SUBSCRIBE`` (``SSUBSCRIBE`` when ``sharded``): fires once Redis
        confirmed (with a push, in RESP3), fails with its error reply.
        """
        return self._pubsub(b"ssubscribe" if sharded else b"subscribe", channel)

    def unsubscribe(self, channel: bytes, sharded: bool = False) -> Deferred[None]:
        """``UNSUBSCRIBE`` (``SUNSUBSCRIBE``): fires once Redis confirmed."""
        return self._pubsub(b"sunsubscribe" if sharded else b"unsubscribe", channel)

    def _pubsub(self, kind: bytes, channel: bytes) -> Deferred[None]:
        if not self.open:
            return fail(ConnectionLost("not connected to Redis"))
        waiting = _Confirmation(kind, channel)
        self._replies.append(waiting)
        self._write(encode_command(kind.upper(), channel))
        return waiting.deferred

    def _write(self, data: bytes) -> None:
        assert self.transport is not None, "written only while open"
        self.transport.write(data)

    def _abort(self) -> None:
        _abort(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self._counted[0] += len(data)
        try:
            replies = self._parser.feed(data)
        except ProtocolError as e:
            self._log.error(
                "hub: Redis sent what is not RESP ({why}); reconnecting", why=e
            )
            self._abort()
            return
        for reply in replies:
            if isinstance(reply, Push):
                self._push(reply)
            elif self._replies:
                waiting = self._replies.popleft()
                if isinstance(waiting, _Confirmation):
                    waiting = waiting.deferred
                if isinstance(reply, RespError):
                    waiting.errback(reply)
                else:
                    waiting.callback(reply)
            else:
                self._log.error(
                    "hub: Redis sent a reply nobody asked for; reconnecting"
                )
                self._abort()
                return

    def _push(self, push: Push) -> None:
        if len(push) >= 2 and push[0] in _CONFIRMATIONS:
            replies = self._replies
            if replies:
                head = replies[0]
                if (
                    isinstance(head, _Confirmation)
                    and head.kind == push[0]
                    and head.channel == push[1]
                ):
                    replies.popleft()
                    head.deferred.callback(None)
                    return
            if push[0] != b"sunsubscribe":
                return
            # Unasked: the Cluster moved the channel's slot away.
        self._on_push(push)

    def connectionLost(self, reason: Failure = _LOST) -> None:
        self._lost = reason
        waiting = [
            w.deferred if isinstance(w, _Confirmation) else w for w in self._replies
        ]
        self._replies.clear()
        for d in waiting:
            d.errback(ConnectionLost(f"lost the connection to Redis: {reason.value}"))
        self.lost.callback(reason.value or ConnectionLost())


class RedisConnection:
    """
    One Redis connection kept up: each new connection is prepared (``HELLO
    3`` with the credentials, ``SELECT``, then the owner's ``prepare``)
    before `protocol` is set and ``on_ready`` runs; a lost one is logged
    and a new one is attempted with backoff.

    The preparation is ours, not ``ClientService``'s ``prepareConnection``:
    a connection rejected there, or a service stopped during it, leaves the
    service a disconnection it has no transition for (Twisted 25). A
    refused connection is closed after a backoff of its own, since the
    service's restarts from its first delay once connected.

    :param reactor: ``IReactorTCP`` and ``IReactorTime``.
    :param prepare: called with each new protocol; a Deferred it returns
        must fire before the connection counts as ready.
    """

    _log = Logger()

    def __init__(
        self,
        address: RedisAddress,
        reactor: Any,
        *,
        on_push: Callable[[Push], None],
        prepare: Callable[[RedisProtocol], Deferred[Any]],
        on_ready: Callable[[RedisProtocol], None],
    ) -> None:
        self.address = address
        self._reactor = reactor
        self._prepare_more = prepare
        self._on_ready = on_ready
        #: The ready protocol, ``None`` while (re)connecting.
        self.protocol: RedisProtocol | None = None
        #: A connection was ready once since `start`.
        self.was_ready = False
        #: Bytes received from Redis, over every connection (``[n]``).
        self.received = [0]
        #: Waiting for the attempt under way (`first_attempt`).
        self._first: list[Deferred[RedisProtocol]] = []
        #: Connections refused in a row (their close is delayed more each).
        self._refused = 0
        self._closing: Any = None
        #: The newest protocol (ready or being prepared), watched for stalls.
        self._current: RedisProtocol | None = None
        self._watch: LoopingCall | None = None
        self._seen = 0
        self._stalls = 0
        self._service = ClientService(
            endpoint(reactor, address),
            Factory.forProtocol(
                lambda: RedisProtocol(on_push, self.received, on_made=self._prepare)
            ),
            retryPolicy=backoffPolicy(initialDelay=RETRY_FIRST, maxDelay=RETRY_MAX),
            clock=reactor,
        )

    @property
    def running(self) -> bool:
        """`start` was called and `stop` was not."""
        return bool(self._service.running)

    def start(self) -> None:
        """Connect, and keep reconnecting until `stop`."""
        self.was_ready = False
        self._service.startService()
        if self._watch is None:
            # One timer per connection, not one per command: replies come in
            # order, so nothing received for a while means the oldest waits.
            self._watch = LoopingCall(self._check)
            self._watch.clock = self._reactor
            self._watch.start(REPLY_TIMEOUT / 2, now=False)

    def stop(self) -> Deferred[None]:
        """Disconnect and stop reconnecting."""
        self.protocol = None
        self._current = None
        watch, self._watch = self._watch, None
        if watch is not None and watch.running:
            watch.stop()
        closing, self._closing = self._closing, None
        if closing is not None and closing.active():
            closing.cancel()
        self._attempted(Failure(ConnectionLost("stopped")))
        stopped: Deferred[None] = self._service.stopService()
        return stopped

    def first_attempt(self) -> Deferred[RedisProtocol]:
        """The ready protocol once the attempt under way succeeds; fails if it fails."""
        waiting: Deferred[RedisProtocol] = Deferred()
        self._first.append(waiting)
        if len(self._first) == 1:
            # Fails when the TCP (or TLS) connection does; a refused
            # preparation is told by `_prepare`.
            connected: Deferred[Any] = self._service.whenConnected(failAfterFailures=1)
            connected.addErrback(self._attempted)
        return waiting

    def _attempted(self, outcome: RedisProtocol | Failure) -> None:
        first, self._first = self._first, []
        for waiting in first:
            if isinstance(outcome, Failure):
                waiting.errback(outcome)
            else:
                waiting.callback(outcome)

    def _check(self) -> None:
        """Every half `REPLY_TIMEOUT`: two checks without a byte, time out."""
        protocol, received = self._current, self.received[0]
        if protocol is None or not protocol.waiting or received != self._seen:
            self._stalls = 0
        else:
            self._stalls += 1
            if self._stalls >= 2:
                self._stalls = 0
                self._log.warn(
                    "hub: Redis at {address} answered nothing for {seconds} s; "
                    "the commands waiting fail",
                    address=self.address,
                    seconds=REPLY_TIMEOUT,
                )
                protocol.time_out()
        self._seen = received

    def _prepare(self, protocol: RedisProtocol) -> None:
        self._current = protocol
        address = self.address
        hello: list[bytes | str | int] = [b"HELLO", 3]
        if address.password is not None:
            hello += [b"AUTH", address.username or "default", address.password]
        steps = protocol.command(*hello)
        if address.db:
            steps.addCallback(lambda _: protocol.command(b"SELECT", address.db))
        steps.addCallback(lambda _: self._prepare_more(protocol))

        def ready(_: object) -> None:
            if not protocol.open or not self._service.running:
                return
            self._refused = 0
            self.protocol = protocol
            if not self.was_ready:
                self._log.info("hub: connected to Redis at {address}", address=address)
            else:
                self._log.info(
                    "hub: reconnected to Redis at {address}; catching up",
                    address=address,
                )
            self.was_ready = True
            protocol.lost.addCallback(self._lost, protocol)
            self._on_ready(protocol)
            self._attempted(protocol)

        def refused(failure: Failure) -> None:
            if not protocol.open or not self._service.running:
                # Lost or stopped meanwhile: the service goes on from there.
                self._attempted(failure)
                return
            if not self._refused:
                self._log.warn(
                    "hub: cannot use Redis at {address}: {why}",
                    address=address,
                    why=failure.value,
                )
            delay = min(RETRY_FIRST * 2**self._refused, RETRY_MAX)
            self._refused += 1
            self._attempted(failure)
            # Closed (and so attempted again) after a backoff of its own.
            self._closing = self._reactor.callLater(delay, _close, protocol)

        steps.addCallbacks(ready, refused)

    def _lost(self, why: BaseException, protocol: RedisProtocol) -> None:
        if self.protocol is not protocol:
            return
        self.protocol = None
        if self._service.running:
            self._log.warn(
                "hub: lost Redis at {address} ({why}); reconnecting with backoff",
                address=self.address,
                why=why,
            )


def _close(protocol: RedisProtocol) -> None:
    transport = protocol.transport
    if transport is not None and protocol.open:
        transport.loseConnection()


def endpoint(reactor: Any, address: RedisAddress) -> IStreamClientEndpoint:
    """How to reach ``address``: TCP, in TLS for ``rediss://``."""
    tcp = HostnameEndpoint(reactor, address.host, address.port, timeout=CONNECT_TIMEOUT)
    if not address.tls:
        return tcp
    from twisted.internet import ssl

    trust = None
    if address.ca is not None:
        with open(address.ca, "rb") as pem:
            bundle = pem.read()
        end = b"-----END CERTIFICATE-----"
        trust = ssl.trustRootFromCertificates(
            [
                ssl.Certificate.loadPEM(block + end)
                for block in bundle.split(end)
                if b"-----BEGIN" in block
            ]
        )
    options = ssl.optionsForClientTLS(address.host, trustRoot=trust)
    return wrapClientTLS(options, tcp)


def _abort(transport: object) -> None:
    """Drop a connection at once (its transport, if it still has one)."""
    # ITCPTransport's, also on TLS and test transports that do not declare it.
    abort = getattr(transport, "abortConnection", None)
    if abort is not None:
        abort()
