"""
EventSource-style clients over real sockets for the end-to-end SSE tests:
many non-blocking connections read in one ``selectors`` loop, each body
de-chunked and decoded with `oxian_tw.sse.Decoder`, as a browser would.
"""

from __future__ import annotations

import selectors
import socket
import struct
import time
from collections.abc import Callable, Iterable

from oxian_tw.sse import Decoder, Event


class _Dechunker:
    """Incremental HTTP/1.1 chunked-body decoder."""

    def __init__(self) -> None:
        self._buffer = b""
        self._need: int | None = None
        #: The terminating zero-length chunk arrived: a clean end.
        self.complete = False

    def feed(self, data: bytes) -> bytes:
        buffer, pos, out = self._buffer + data, 0, []
        while not self.complete:
            if self._need is None:
                end = buffer.find(b"\r\n", pos)
                if end < 0:
                    break
                size = int(buffer[pos:end].split(b";")[0], 16)
                pos = end + 2
                if size == 0:
                    self.complete = True
                    break
                self._need = size
            if len(buffer) - pos < self._need + 2:
                break
            out.append(buffer[pos : pos + self._need])
            pos += self._need + 2
            self._need = None
        self._buffer = buffer[pos:]
        return b"".join(out)


class SseClient:
    """
    One ``GET`` of an event stream on its own socket.

    :ivar status: the response status, once the head has arrived.
    :ivar headers: lower-cased response headers.
    :ivar events: the events decoded so far.
    :ivar eof: the server closed the connection (or reset it).
    """

    def __init__(
        self,
        port: int,
        path: str,
        *,
        reading: bool = True,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Accept: text/event-stream\r\n{extra}\r\n".encode("latin-1")
        )
        self.sock.setblocking(False)
        self.reading = reading
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.events: list[Event] = []
        self.eof = False
        self.received = 0
        self.decoder = Decoder()
        self._head = b""
        self._body = _Dechunker()

    @property
    def complete(self) -> bool:
        """The body ended with its last chunk (not cut)."""
        return self._body.complete

    def on_readable(self) -> None:
        try:
            data = self.sock.recv(256 * 1024)
        except BlockingIOError:
            return
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return
        self.received += len(data)
        if self.status is None:
            self._head += data
            if b"\r\n\r\n" not in self._head:
                return
            head, _, data = self._head.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            self.status = int(lines[0].split()[1])
            for line in lines[1:]:
                name, _, value = line.partition(":")
                self.headers[name.strip().lower()] = value.strip()
        for item in self.decoder.feed(self._body.feed(data)):
            if isinstance(item, Event):
                self.events.append(item)

    def abort(self) -> None:
        """Leave abruptly: a reset, not a clean close."""
        self.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        self.close()

    def close(self) -> None:
        self.sock.close()
        self.eof = True


def pump(
    clients: Iterable[SseClient],
    until: Callable[[], bool],
    timeout: float = 60.0,
) -> None:
    """
    Read every reading, open client until ``until()`` is true.

    :raises AssertionError: after ``timeout`` seconds.
    """
    selector = selectors.DefaultSelector()
    for client in clients:
        if client.reading and not client.eof:
            selector.register(client.sock, selectors.EVENT_READ, client)
    deadline = time.monotonic() + timeout
    try:
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"clients still waiting after {timeout} s")
            for key, _ in selector.select(min(left, 0.5)):
                client = key.data
                client.on_readable()
                if client.eof:
                    selector.unregister(client.sock)
    finally:
        selector.close()
