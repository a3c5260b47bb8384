# -*- test-case-name: tests.test_fastpath -*-
"""
What oxian_tw does below Twisted's transports: direct socket writes and
socket options. The one module that reads what Twisted's TCP transport
does not make public (HTTP/2's own is `oxian_tw._h2`).

Each use is checked once, at import, against the installed Twisted; where
the check fails, the public path is taken instead and nothing else in
oxian_tw changes. ``tests/test_fastpath.py`` runs the framework both ways.

Direct socket writes (`DirectWriter`)
    Twisted's TCP transport queues every ``write`` and sends it the next
    time the reactor finds the socket writable: per connection and per
    reactor turn that is an ``epoll_ctl`` to watch for writability, a wake
    up, the ``send``, and an ``epoll_ctl`` to stop watching, plus a copy when
    the queued pieces are joined. When the transport holds nothing, a body's
    bytes can go to the socket at once, in one ``sendmsg`` with their
    chunked framing, as asyncio's transports do; what the kernel does not
    take is handed to the transport, whose buffer then pauses the producer
    as usual, so backpressure is unchanged. Whether the transport holds
    anything is not public: it is ``_tempDataLen`` (bytes queued since the
    last send) and ``dataBuffer``/``offset`` (the rest of the last send) of
    ``twisted.internet.abstract.FileDescriptor``. Without them (`DIRECT` is
    false) every body goes through ``transport.writeSequence``.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from twisted.internet import abstract, tcp

try:
    import fcntl
    import termios
except ImportError:  # not on Windows
    fcntl = termios = None  # type: ignore[assignment]

__all__ = ("DIRECT", "DirectWriter", "limit_unacknowledged", "unsent_bytes")


class _NoReactor:
    """Stands in for a reactor so that probing constructs nothing real."""

    def __bool__(self) -> bool:
        return True


def _transport_buffer_readable() -> bool:
    """Whether the installed Twisted keeps its write buffer where we read it."""
    try:
        probe = abstract.FileDescriptor(reactor=_NoReactor())  # type: ignore[arg-type]
    except Exception:
        return False
    return (
        isinstance(getattr(probe, "_tempDataLen", None), int)
        and isinstance(getattr(tcp.Connection, "dataBuffer", None), bytes)
        and isinstance(getattr(tcp.Connection, "offset", None), int)
        and hasattr(tcp.Connection, "TLS")
    )


#: Whether direct socket writes are possible with the installed Twisted.
DIRECT: bool = _transport_buffer_readable()


class DirectWriter:
    """
    Sends body bytes straight to a plain TCP socket while the transport has
    nothing queued (see the module docstring).

    :param transport: a ``tcp.Connection`` (use `for_transport`).
    """

    #: Bytes sent directly before one send takes the transport's path, so
    #: that a client that always keeps up cannot keep the reactor from
    #: serving other connections.
    TURN_BYTES = 4 * 1024 * 1024
    #: Pieces handed to one ``sendmsg``; more are joined first (the kernel
    #: takes at most ``IOV_MAX``, 1024 on Linux).
    MAX_PARTS = 512

    __slots__ = ("_transport", "_socket", "_turn")

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._socket = transport.socket
        self._turn = self.TURN_BYTES

    @classmethod
    def for_transport(cls, transport: Any) -> DirectWriter | None:
        """A writer for ``transport``, or ``None`` when it is not plain TCP."""
        if (
            DIRECT
            and isinstance(transport, tcp.Connection)
            and not transport.TLS
            and hasattr(getattr(transport, "socket", None), "sendmsg")
        ):
            return cls(transport)
        return None

    def send(self, parts: list[bytes]) -> bool:
        """
        Send ``parts`` in order; ``False`` (nothing done) when they must go
        through the transport instead: it holds bytes already, the turn's
        budget is spent, or the connection is closing.
        """
        transport = self._transport
        if (
            self._turn <= 0
            or transport._tempDataLen
            or len(transport.dataBuffer) > transport.offset
            or not transport.connected
            or transport.disconnecting
        ):
            self._turn = self.TURN_BYTES
            return False
        if len(parts) > self.MAX_PARTS:
            parts = [b"".join(parts)]
        try:
            sent = self._socket.sendmsg(parts)
        except BlockingIOError:
            sent = 0
        except OSError:
            # Let the transport meet the error and close as it always does.
            return False
        self._turn -= sent
        rest = []
        for part in parts:
            if sent >= len(part):
                sent -= len(part)
                continue
            rest.append(part[sent:] if sent else part)
            sent = 0
        if rest:
            transport.writeSequence(rest)
        return True


def limit_unacknowledged(transport: Any, seconds: float) -> None:
    """
    Have the kernel drop the connection of ``transport`` when sent bytes
    stay unacknowledged for ``seconds`` (``TCP_USER_TIMEOUT``), so a
    heartbeat to a peer that vanished (half-open) ends the stream instead of
    retransmitting for minutes. Linux TCP sockets only; elsewhere a no-op.
    """
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    sock = getattr(transport, "socket", None)
    if option is None or sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, int(seconds * 1000))
    except (OSError, AttributeError):
        pass


def unsent_bytes(transport: Any) -> int:
    """
    Bytes written to ``transport`` that have not left its socket: what the
    transport still queues (`DIRECT`'s private state) and what the kernel
    has not sent (``SIOCOUTQ``, Linux). ``0`` when either is unknown (TLS:
    the queue holds ciphertext, not the response's bytes).
    """
    if not DIRECT or not isinstance(transport, tcp.Connection) or transport.TLS:
        return 0
    queued = transport._tempDataLen + len(transport.dataBuffer) - transport.offset
    sock = getattr(transport, "socket", None)
    kernel = 0
    if sock is not None and fcntl is not None and hasattr(termios, "TIOCOUTQ"):
        try:
            kernel = struct.unpack(
                "i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
            )[0]
        except (OSError, ValueError):
            kernel = 0
    return int(queued) + int(kernel)
