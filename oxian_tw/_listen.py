# -*- test-case-name: tests.test_listen -*-
"""
Listening, and saying where: one service per ``--listen`` endpoint that
logs a URL to open once the port is bound (``listening on
http://127.0.0.1:8080/``), instead of Twisted's factory lines, which name
a class and an object address.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._text import is_decimal

#: The listen backlog of a listener whose description names none
#: (Twisted's default of 50 dropped thousands of SYNs under a connect
#: burst); the kernel caps it at ``net.core.somaxconn``.
LISTEN_BACKLOG = 1024

# Endpoint types whose descriptions take a ``backlog=`` argument.
_BACKLOG_TYPES = {"tcp", "tcp6", "ssl", "unix"}
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
    `LISTEN_BACKLOG` added) while running, and log the URL once bound. A
    port that cannot be bound is logged as an error, or, when the listener
    is ``fatal`` (``twistd oxian``'s), stops the process: one line, exit
    status 1 (SPEC §12.1), so that a supervisor sees it did not start.

    :param reactor: the reactor to listen with (the global one when
        ``None``).
    """

    _log = Logger()
    #: A port that cannot be bound ends the process (``twistd oxian``).
    fatal = False

    def __init__(self, description: str, factory: Any, reactor: Any = None) -> None:
        self.description = description
        #: What the port serves (the app's site).
        self.factory = factory
        self._reactor = reactor
        self._listening: Deferred[Any] | None = None
        #: The bound port, once listening.
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        # Before twistd drops privileges: ports below 1024 bind here.
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor
        endpoint = serverFromString(reactor, with_backlog(self.description))
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
        self._log.info(
            "oxian_tw: listening on {url} ({description})",
            url=url_of(self.description, port.getHost()),
            description=self.description,
        )
        return port

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
