# -*- test-case-name: tests.test_listen -*-
"""
Listening, and saying where: one service per ``--listen`` endpoint that
logs a URL to open once the port is bound (``listening on
http://127.0.0.1:8080/``), instead of Twisted's factory lines, which name
a class and an object address.

Besides Twisted's strports descriptions, ``any:PORT`` (the default,
``any:8080``) listens on every IPv4 and every IPv6 interface: IPv4 as
``tcp:PORT``, then IPv6 on the same port with ``IPV6_V6ONLY`` (so peers
keep their plain IPv4 addresses, whatever ``net.ipv6.bindv6only`` says),
adopted by the reactor (``IReactorSocket``). A host without IPv6 — or
whose IPv6 port cannot be had — is served on IPv4 alone, said in one
line; that is never a startup failure (SPEC §8).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IReactorSocket
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._text import is_decimal

#: The endpoint type of every IPv4 and IPv6 interface (ours): ``any:PORT``.
ANY = "any"
#: The port listened on when neither ``--listen`` nor ``$PORT`` says.
DEFAULT_PORT = 8080


def default_listen() -> tuple[str, ...]:
    """``any:$PORT`` when ``PORT`` is set, else ``any:8080``."""
    port = os.environ.get("PORT") or DEFAULT_PORT
    return (f"{ANY}:{port}",)


def ipv6_socket(port: int, backlog: int) -> socket.socket:
    """
    A non-blocking TCP socket listening on ``port`` of every IPv6
    interface, and only IPv6 (``IPV6_V6ONLY``). Raises ``OSError`` when
    the host has no IPv6 or the port is taken.
    """
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        # As Twisted's own TCP ports: a restart binds at once.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::", port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _any_parts(description: str) -> tuple[int, int]:
    """The port and backlog of ``any:PORT[:backlog=N]``."""
    _, _, rest = description.partition(":")
    port, *options = rest.split(":")
    backlog = LISTEN_BACKLOG
    for option in options:
        name, _, value = option.partition("=")
        if name != "backlog" or not is_decimal(value):
            raise ValueError(f"{option!r}: any:PORT takes only backlog=N")
        backlog = int(value)
    if not is_decimal(port):
        raise ValueError(f"{port!r} is not a port number")
    return int(port), backlog


#: The listen backlog of a listener whose description names none
#: (Twisted's default of 50 dropped thousands of SYNs under a connect
#: burst); the kernel caps it at ``net.core.somaxconn``.
LISTEN_BACKLOG = 1024

# Endpoint types whose descriptions take a ``backlog=`` argument.
_BACKLOG_TYPES = {"tcp", "tcp6", "ssl", "unix", ANY}
_TLS_TYPES = {"ssl"}
# Addresses that mean "every interface": the URL names this machine instead.
_ANY = {"0.0.0.0", "::", ""}


def with_backlog(description: str) -> str:
    """``description`` (strports) with ``backlog=`` `LISTEN_BACKLOG` if it has none."""
    kind, _, rest = description.partition(":")
    if is_decimal(description):  # the old "8080" form: TCP
        return f"tcp:{description}:backlog={LISTEN_BACKLOG}"
    if kind.lower() not in _BACKLOG_TYPES:
        return description
    if any(part.startswith("backlog=") for part in rest.split(":")):
        return description
    return f"{description}:backlog={LISTEN_BACKLOG}"


def url_of(description: str, address: Any) -> str:
    """
    What to open for a port listening as ``description`` at ``address``:
    ``http://host:port/`` (``https`` for TLS), ``unix:path`` for a Unix
    socket, else the description.
    """
    kind = "tcp" if is_decimal(description) else description.partition(":")[0]
    kind = kind.lower()
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if isinstance(host, str) and isinstance(port, int):
        scheme = "https" if kind in _TLS_TYPES else "http"
        if host in _ANY:
            host = "localhost"
        elif ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{port}/"
    name = getattr(address, "name", None)
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    if isinstance(name, str):
        return f"unix:{name}"
    return description


class Listener(Service):
    """
    Listen with ``factory`` on the endpoint ``description`` (strports, with
    `LISTEN_BACKLOG` added, or ``any:PORT``) while running, and log the URL
    once bound. A port that cannot be bound is logged as an error, or, when
    the listener is ``fatal`` (``twistd oxian``'s), stops the process: one
    line, exit status 1 (SPEC §12.1), so that a supervisor sees it did not
    start. For ``any:PORT`` that is the IPv4 port; the IPv6 one is served
    when it can be.

    :param reactor: the reactor to listen with (the global one when
        ``None``).
    """

    _log = Logger()
    #: A port that cannot be bound ends the process (``twistd oxian``).
    fatal = False
    #: Makes ``any:PORT``'s IPv6 socket (tests replace it).
    open_ipv6: Callable[[int, int], socket.socket] = staticmethod(ipv6_socket)

    def __init__(self, description: str, factory: Any, reactor: Any = None) -> None:
        self.description = description
        #: What the port serves (the app's site).
        self.factory = factory
        self._reactor = reactor
        self._listening: Deferred[Any] | None = None
        #: The bound port, once listening (``any:PORT``: the IPv4 one).
        self.port: IListeningPort | None = None
        #: ``any:PORT``'s IPv6 port, when it could be had.
        self.ipv6_port: IListeningPort | None = None

    def _the_reactor(self) -> Any:
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor
        return reactor

    def _endpoint(self) -> Any:
        description = with_backlog(self.description)
        if description.partition(":")[0].lower() == ANY:
            port, backlog = _any_parts(description)
            description = f"tcp:{port}:backlog={backlog}"
        return serverFromString(self._the_reactor(), description)

    def privilegedStartService(self) -> None:
        # Before twistd drops privileges: ports below 1024 bind here.
        try:
            endpoint = self._endpoint()
        except ValueError as exc:
            self._listening = Deferred()
            self._listening.errback(Failure(exc))
        else:
            self._listening = endpoint.listen(self.factory)
        failed: list[Failure] = []
        self._listening.addCallbacks(self._bound, failed.append)
        if failed and self.fatal:
            # TCP, TLS and Unix endpoints fail here, before the reactor
            # runs: twistd turns this into one line on stderr and status 1.
            raise SystemExit(
                f"twistd oxian: {cannot_listen(self.description, failed[0])}"
            )
        if failed:
            self._not_bound(failed[0])
        else:
            self._listening.addErrback(self._not_bound)
        super().privilegedStartService()  # type: ignore[no-untyped-call]

    def startService(self) -> None:
        if self._listening is None:
            self.privilegedStartService()
        super().startService()  # type: ignore[no-untyped-call]

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        listening, self._listening = self._listening, None
        port, self.port = self.port, None
        ipv6_port, self.ipv6_port = self.ipv6_port, None
        if ipv6_port is not None:
            ipv6_port.stopListening()
        if port is not None:
            stopped = port.stopListening()
            if isinstance(stopped, Deferred):
                return stopped.addCallback(lambda _: None)
            return succeed(None)
        if listening is not None:
            listening.cancel()
        return succeed(None)

    def _bound(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        also = ""
        if self.description.partition(":")[0].lower() == ANY:
            also = self._also_ipv6(port.getHost().port)  # type: ignore[attr-defined]
        self._log.info(
            "oxian_tw: listening on {url} ({description}{also})",
            url=url_of(self.description, port.getHost()),
            description=self.description,
            also=also,
        )
        return port

    def _also_ipv6(self, number: int) -> str:
        """Listen on IPv6's ``number`` too; what to add to the log line."""
        reactor = self._the_reactor()
        if not IReactorSocket.providedBy(reactor):
            return ": IPv4 only, this reactor cannot adopt an IPv6 socket"
        _, backlog = _any_parts(with_backlog(self.description))
        try:
            sock = self.open_ipv6(number, backlog)
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            return f": IPv4 only, no IPv6 port {number} here ({reason})"
        try:
            self.ipv6_port = reactor.adoptStreamPort(
                sock.fileno(), socket.AF_INET6, self.factory
            )
        finally:
            # The reactor holds a duplicate of the descriptor.
            sock.close()
        return ": IPv4 and IPv6"

    def _not_bound(self, failure: Failure) -> None:
        self._log.error(
            "oxian_tw: {problem}",
            problem=cannot_listen(self.description, failure),
            description=self.description,
        )
        if self.fatal:
            # An endpoint that failed later (none of Twisted's own do):
            # twistd has no exit status to give but a signal's.
            from twisted.internet import reactor

            reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
            reactor.stop()


def cannot_listen(description: str, failure: Failure) -> str:
    """
    "cannot listen on tcp:8080: address already in use": what went wrong,
    in one line.
    """
    error = failure.value
    reason = getattr(error, "socketError", None) or error
    text = getattr(reason, "strerror", None) or str(reason) or type(error).__name__
    return f"cannot listen on {description}: {str(text).lower()}"
