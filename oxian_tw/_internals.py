# -*- test-case-name: tests.test_internals -*-
"""
The one module that reads what Twisted does not make public.

Each use is checked once, at import, against the installed Twisted; where
the check fails, the public path is taken instead and nothing else in
oxian_tw changes. ``tests/test_internals.py`` runs the framework both ways.

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

from collections import deque
from typing import Any

from twisted.internet import abstract, tcp
from twisted.internet.defer import Deferred

__all__ = ("DIRECT", "H2", "DirectWriter", "BoundedH2Connection", "switch_to_h2")


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


# --- HTTP/2 ---------------------------------------------------------------
#
# Twisted's ``H2Connection`` (``twisted.web._http2``, a private module)
# queues each stream's outbound data in a deque and sends one frame per
# reactor turn. Two costs follow (both upstream behaviour, Twisted 26.10):
#
# - ``remainingOutboundWindow`` sums the whole queue, and every
#   ``writeDataToStream`` calls it: n small writes cost O(n²).
# - A stream's producer is paused only when the client's flow-control
#   window is used up; a client that advertises a huge window and reads
#   nothing makes the queue (and the server's memory) grow without bound,
#   since the transport pausing the connection stops the sending loop but
#   not the streams.
#
# - The sending loop sends one frame per reactor turn, each in its own
#   transport write; a stream whose window is closed stays scheduled, so
#   the loop calls itself at once, forever (100% CPU until WINDOW_UPDATE).
#
# `BoundedH2Connection` keeps a running byte count per queue (O(1)) and
# reports the room left as the smaller of the window and a per-stream
# high-water mark, so Twisted's own logic pauses a stream's producer once
# 64 KiB wait in its queue, and resumes it once the queue has drained. Its
# own sending loop sends up to 256 KiB of frames per turn in one write,
# blocks a stream on a closed window, and is restarted by WINDOW_UPDATE.
# Connections are switched to it by `switch_to_h2`, which replaces what
# ``_GenericHTTPChannelProtocol.dataReceived`` does on ALPN ``h2`` (it
# builds Twisted's class with the global reactor) and also serves h2c
# (the client's preface on a cleartext connection). An `OxianSite` offers
# ``h2`` in ALPN only when `H2` holds: its connections are plain
# ``HTTPChannel``s, without Twisted's switching wrapper.

#: The HTTP/2 client connection preface (RFC 9113 §3.4).
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

#: Bytes a stream may have queued in its HTTP/2 connection before its
#: producer is paused; it is resumed below `H2_LOW_WATER`.
H2_HIGH_WATER = 64 * 1024
H2_LOW_WATER = 16 * 1024

#: At most this many frames, or about this many bytes, leave an HTTP/2
#: connection in one reactor turn (one write), so that one busy connection
#: does not hold the reactor from the others.
H2_FRAMES_PER_TURN = 64
H2_BYTES_PER_TURN = 256 * 1024

try:
    from twisted.web import _http2
except ImportError:  # h2 not installed
    _http2 = None  # type: ignore[assignment]


class _ProbeReactor:
    """Enough of a reactor to build an ``H2Connection`` that runs nothing."""

    def seconds(self) -> float:
        return 0.0

    def callLater(self, *args: Any, **kwargs: Any) -> None:  # noqa: N802
        return None


#: What `BoundedH2Connection` reads and calls on Twisted's ``H2Connection``.
_H2_METHODS = (
    "_requestReceived",
    "_requestDone",
    "_handleWindowUpdate",
    "_sendPrioritisedData",
    "writeDataToStream",
    "remainingOutboundWindow",
    "resetTimeout",
)
_H2_STATE = (
    "_stillProducing",
    "_consumerBlocked",
    "_sendingDeferred",
    "_outboundStreamQueues",
    "_reactor",
    "priority",
    "conn",
    "streams",
)


def _h2_usable() -> bool:
    if _http2 is None:
        return False
    connection = getattr(_http2, "H2Connection", None)
    priority = getattr(_http2, "priority", None)
    if (
        connection is None
        or getattr(_http2, "_END_STREAM_SENTINEL", None) is None
        or not callable(getattr(priority, "PriorityTree", None))
        or not isinstance(getattr(priority, "DeadlockError", None), type)
        or not all(callable(getattr(connection, n, None)) for n in _H2_METHODS)
    ):
        return False
    try:
        probe = connection(_ProbeReactor())
    except Exception:
        return False
    return all(hasattr(probe, name) for name in _H2_STATE)


#: Whether `BoundedH2Connection` and `switch_to_h2` can be used; without
#: them a site speaks HTTP/1.1 only (ALPN does not offer h2; h2c is not
#: served).
H2: bool = _h2_usable()


class _CountedQueue(deque):  # type: ignore[type-arg]
    """A stream's outbound queue that knows how many data bytes it holds."""

    __slots__ = ("size", "_drained")

    def __init__(self, drained: Any) -> None:
        super().__init__()
        self.size = 0
        self._drained = drained

    def append(self, item: Any) -> None:
        if type(item) is bytes:
            self.size += len(item)
        super().append(item)

    def appendleft(self, item: Any) -> None:
        if type(item) is bytes:
            self.size += len(item)
        super().appendleft(item)

    def popleft(self) -> Any:
        item = super().popleft()
        if type(item) is bytes:
            before = self.size
            self.size -= len(item)
            if before >= H2_LOW_WATER > self.size:
                self._drained()
        return item


if H2:
    import priority as _priority

    class BoundedH2Connection(_http2.H2Connection):
        """
        Twisted's ``H2Connection`` with O(1) writes, bounded queues, several
        frames per reactor turn, and no busy loop while a stream's window
        is closed.
        """

        def __init__(self, reactor: Any = None) -> None:
            super().__init__(reactor)  # type: ignore[no-untyped-call]
            self._drained: set[int] = set()
            self._closing: Any = None

        def _requestReceived(self, event: Any) -> None:
            super()._requestReceived(event)  # type: ignore[no-untyped-call]
            stream_id = event.stream_id
            self._outboundStreamQueues[stream_id] = _CountedQueue(
                lambda: self._drained.add(stream_id)
            )

        def remainingOutboundWindow(self, streamID: int) -> int:  # noqa: N803
            queue = self._outboundStreamQueues[streamID]
            window = self.conn.local_flow_control_window(streamID)
            return min(int(window), H2_HIGH_WATER) - int(queue.size)

        def _sendPrioritisedData(self, *args: Any) -> None:  # noqa: N802
            # Twisted's loop sends one frame per reactor turn, each in its
            # own write (a wake-up and a system call per 16 KiB frame), and
            # leaves a stream whose window is closed scheduled, so that it
            # calls itself at once, forever (100% CPU until the client opens
            # the window). This one sends up to H2_FRAMES_PER_TURN frames or
            # H2_BYTES_PER_TURN bytes in one write, in the priority tree's
            # order, and blocks a stream whose window is closed until a
            # WINDOW_UPDATE unblocks it.
            if not self._stillProducing:
                return
            if self._consumerBlocked is not None:
                self._consumerBlocked.addCallback(self._sendPrioritisedData)
                return
            conn = self.conn
            queues = self._outboundStreamQueues
            tree = self.priority
            frames = sent = 0
            self.resetTimeout()  # type: ignore[no-untyped-call]
            while frames < H2_FRAMES_PER_TURN and sent < H2_BYTES_PER_TURN:
                try:
                    stream_id = next(tree)
                except _priority.DeadlockError:
                    if self._drained:
                        # Producers paused at the high-water mark may have
                        # more now that their queues drained: ask, and go on.
                        self._wake_drained()
                        continue
                    # Every stream waits: for data, or for its window. What
                    # ends the wait (new data, a WINDOW_UPDATE) schedules
                    # the next turn rather than running it inside a write,
                    # so that a handler's writes in one reactor turn leave
                    # together. Wait before waking producers: their writes
                    # end it.
                    self._flush()
                    if self._sendingDeferred is None:
                        waiting: Deferred[Any] = Deferred()
                        self._sendingDeferred = waiting
                        waiting.addCallback(self._next_turn)
                    self._after_turn()
                    return
                frames += 1
                queue = queues[stream_id]
                if queue[0] is _http2._END_STREAM_SENTINEL:
                    queue.popleft()
                    conn.end_stream(stream_id)
                    self._flush()
                    self._requestDone(stream_id)  # type: ignore[no-untyped-call]
                    continue
                window = conn.local_flow_control_window(stream_id)
                room = min(conn.max_outbound_frame_size, window)
                if room > 0:
                    head = queue.popleft()
                    if len(head) > room:
                        queue.appendleft(head[room:])
                        head = head[:room]
                    conn.send_data(stream_id, head)
                    sent += len(head)
                    window -= len(head)
                if not queue or (
                    window <= 0 and queue[0] is not _http2._END_STREAM_SENTINEL
                ):
                    tree.block(stream_id)
                if self.remainingOutboundWindow(stream_id) <= 0:
                    self.streams[stream_id].flowControlBlocked()
            self._flush()
            self._after_turn()
            if self._consumerBlocked is not None:
                self._consumerBlocked.addCallback(self._sendPrioritisedData)
            else:
                self._reactor.callLater(0, self._sendPrioritisedData)

        def _next_turn(self, _: object) -> None:
            self._reactor.callLater(0, self._sendPrioritisedData)

        def _flush(self) -> None:
            data = self.conn.data_to_send()
            if data:
                assert self.transport is not None
                self.transport.write(data)

        def _wake_drained(self) -> None:
            drained, self._drained = self._drained, set()
            for stream_id in drained:
                stream = self.streams.get(stream_id)
                if stream is not None:
                    stream.windowUpdated()

        def _after_turn(self) -> None:
            self._wake_drained()
            closing = self._closing
            if closing is not None and not self.streams:
                self._closing = None
                closing()

        def _handleWindowUpdate(self, event: Any) -> None:  # noqa: N802
            # Twisted unblocks the streams but does not restart a sending
            # loop that found every stream blocked (it never needed to: it
            # did not block streams on a closed window). The loop is held
            # while producers wake, so that a stream ending in it cannot
            # change ``streams`` while Twisted iterates over it.
            waiting, self._sendingDeferred = self._sendingDeferred, None
            try:
                if event.stream_id:
                    super()._handleWindowUpdate(event)  # type: ignore[no-untyped-call]
                else:
                    for stream_id in list(self.streams):
                        # One that ended while others woke is gone.
                        stream: Any = self.streams.get(stream_id)
                        if stream is None:
                            continue
                        if self._outboundStreamQueues.get(stream_id):
                            self.priority.unblock(stream_id)
                        stream.windowUpdated()
            finally:
                if waiting is not None:
                    waiting.callback(event.stream_id)

        def _close_when_idle(self, close: Any) -> None:
            """Send ``GOAWAY``; call ``close`` once no stream is left."""
            self.conn.close_connection()
            assert self.transport is not None
            self.transport.write(self.conn.data_to_send())
            if not self.streams:
                close()
            else:
                self._closing = close

    def switch_to_h2(channel: Any, reactor: Any) -> Any:
        """
        Serve the connection of ``channel`` (an ``HTTPChannel`` that has not
        read anything yet) as HTTP/2 with `BoundedH2Connection` on
        ``reactor``, as Twisted does after ALPN ``h2``; returns the HTTP/2
        connection, which takes the channel's place.
        """
        transport = channel.transport
        transport.unregisterProducer()
        channel.setTimeout(None)
        # Twisted's ALPN path sets these after building the connection.
        connection: Any = BoundedH2Connection(reactor)
        connection.requestFactory = channel.requestFactory
        connection.site = channel.site
        connection.factory = channel.factory
        connection.timeOut = channel.timeOut
        connection.callLater = channel.callLater
        connection.makeConnection(transport)
        transport.registerProducer(connection, True)
        return connection

else:  # pragma: no cover - exercised by the fallback test
    BoundedH2Connection = None  # type: ignore[assignment,misc]

    def switch_to_h2(channel: Any, reactor: Any) -> Any:
        raise RuntimeError("HTTP/2 switching is unavailable with this Twisted")
