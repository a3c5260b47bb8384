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
from urllib.parse import unquote, urlsplit

import attrs
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._text import is_decimal
from ._resp import ProtocolError, Push, RespError, RespParser, encode_command

#: Seconds before the first reconnection attempt and at most between two.
RETRY_FIRST = 0.2
RETRY_MAX = 5.0
CONNECT_TIMEOUT = 5.0


@attrs.frozen
class RedisAddress:
    """Where the hub's Redis is: ``redis://[[user]:password@]host[:port][/db]``."""

    host: str
    port: int = 6379
    db: int = 0
    username: str | None = attrs.field(default=None, repr=False)
    password: str | None = attrs.field(default=None, repr=False)

    def __str__(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"


def parse_redis_url(url: str) -> RedisAddress:
    """
    :raises ValueError: for anything but ``redis://host[:port][/db]``, with
        optional ``user:password@`` or ``:password@``.
    """
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise ValueError("expected redis://host[:port][/db]")
    if parts.query or parts.fragment:
        raise ValueError("a Redis URL has no query or fragment")
    try:
        port = 6379 if parts.port is None else parts.port
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise ValueError("the port is a number from 1 to 65535")
    path = parts.path.strip("/")
    if path and not is_decimal(path):
        raise ValueError("the database after the / is a number")
    password = None if parts.password is None else unquote(parts.password)
    return RedisAddress(
        host=parts.hostname,
        port=port,
        db=int(path or 0),
        username=unquote(parts.username) if parts.username else None,
        password=password,
    )


_LOST = Failure(ConnectionLost())

# Pub/sub confirmations (RESP3 pushes): the protocol's own business.
_SUBSCRIBED = frozenset({b"subscribe", b"ssubscribe"})
_CONFIRMATIONS = _SUBSCRIBED | {b"unsubscribe", b"sunsubscribe"}


class RedisProtocol(Protocol):
    """
    Commands whose replies come back in order, and pushes (pub/sub
    messages) handed to ``on_push`` as they arrive between them.
    """

    _log = Logger()

    def __init__(
        self, on_push: Callable[[Push], None], counted: list[int] | None = None
    ) -> None:
        self._on_push = on_push
        #: Bytes received, added to ``counted[0]`` (shared by a connection's
        #: successive protocols).
        self._counted = counted if counted is not None else [0]
        self._parser = RespParser()
        self._replies: collections.deque[Deferred[Any]] = collections.deque()
        self._subscribing: dict[bytes, Deferred[None]] = {}
        self._lost: Failure | None = None
        #: Fires with why (an exception) once the connection is lost.
        self.lost: Deferred[BaseException] = Deferred()

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
        confirmed (with a push, in RESP3).
        """
        if not self.open:
            return fail(ConnectionLost("not connected to Redis"))
        confirmed: Deferred[None] = Deferred()
        self._subscribing[channel] = confirmed
        command = b"SSUBSCRIBE" if sharded else b"SUBSCRIBE"
        self._write(encode_command(command, channel))
        return confirmed

    def unsubscribe(self, channel: bytes, sharded: bool = False) -> None:
        """``UNSUBSCRIBE`` (``SUNSUBSCRIBE``); its confirmation is not awaited."""
        if self.open:
            command = b"SUNSUBSCRIBE" if sharded else b"UNSUBSCRIBE"
            self._write(encode_command(command, channel))

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
            if push[0] in _SUBSCRIBED:
                confirmed = self._subscribing.pop(push[1], None)
                if confirmed is not None:
                    confirmed.callback(None)
            return
        self._on_push(push)

    def connectionLost(self, reason: Failure = _LOST) -> None:
        self._lost = reason
        waiting = [*self._replies, *self._subscribing.values()]
        self._replies.clear()
        self._subscribing.clear()
        for d in waiting:
            d.errback(ConnectionLost(f"lost the connection to Redis: {reason.value}"))
        self.lost.callback(reason.value or ConnectionLost())


class RedisConnection:
    """
    One Redis connection kept up: each new connection is prepared (``HELLO
    3`` with the credentials, ``SELECT``, then the owner's ``prepare``)
    before `protocol` is set and ``on_ready`` runs; a lost one is logged
    and a new one is attempted with backoff.

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
        self._prepare_more = prepare
        self._on_ready = on_ready
        #: The ready protocol, ``None`` while (re)connecting.
        self.protocol: RedisProtocol | None = None
        #: A connection was ready once since `start`.
        self.was_ready = False
        #: Bytes received from Redis, over every connection (``[n]``).
        self.received = [0]
        self._service = ClientService(
            HostnameEndpoint(
                reactor, address.host, address.port, timeout=CONNECT_TIMEOUT
            ),
            Factory.forProtocol(lambda: RedisProtocol(on_push, self.received)),
            retryPolicy=backoffPolicy(initialDelay=RETRY_FIRST, maxDelay=RETRY_MAX),
            clock=reactor,
            prepareConnection=self._prepare,  # type: ignore[arg-type]
        )

    @property
    def running(self) -> bool:
        """`start` was called and `stop` was not."""
        return bool(self._service.running)

    def start(self) -> None:
        """Connect, and keep reconnecting until `stop`."""
        self.was_ready = False
        self._service.startService()

    def stop(self) -> Deferred[None]:
        """Disconnect and stop reconnecting."""
        self.protocol = None
        return self._service.stopService()

    def first_attempt(self) -> Deferred[RedisProtocol]:
        """The ready protocol once the attempt under way succeeds; fails if it fails."""
        connected: Deferred[RedisProtocol] = self._service.whenConnected(
            failAfterFailures=1
        )  # type: ignore[assignment]
        return connected

    def _prepare(self, protocol: RedisProtocol) -> Deferred[None]:
        address = self.address
        hello: list[bytes | str | int] = [b"HELLO", 3]
        if address.password is not None:
            hello += [b"AUTH", address.username or "default", address.password]
        steps = protocol.command(*hello)
        if address.db:
            steps.addCallback(lambda _: protocol.command(b"SELECT", address.db))
        steps.addCallback(lambda _: self._prepare_more(protocol))

        def ready(_: object) -> None:
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

        def refused(failure: Failure) -> Failure:
            # A refused HELLO/AUTH/SELECT leaves a connection open that the
            # ClientService does not know about.
            _abort(protocol.transport)
            self._log.warn(
                "hub: cannot use Redis at {address}: {why}",
                address=address,
                why=failure.value,
            )
            return failure

        return steps.addCallbacks(ready, refused)

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


def _abort(transport: object) -> None:
    """Drop a connection at once (its transport, if it still has one)."""
    # ITCPTransport's, also on TLS and test transports that do not declare it.
    abort = getattr(transport, "abortConnection", None)
    if abort is not None:
        abort()
