# -*- test-case-name: tests.test_h2 -*-
"""
HTTP/2: the only module that touches Twisted's HTTP/2 internals
(``twisted.web._http2``, a private module).

What it reads is checked once, at import, against the installed Twisted
(`H2`); where the check fails, a site speaks HTTP/1.1 only (ALPN does not
offer ``h2``; h2c is not served) and nothing else in oxian_tw changes.
``tests/test_h2.py`` runs the framework both ways.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = (
    "H2",
    "H2_PREFACE",
    "BoundedH2Connection",
    "FrameScanner",
    "H2Watcher",
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "ResetBudget",
    "switch_to_h2",
)

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
#
# What a client sends is bounded too (SPEC §12):
#
# - Twisted hands every read to h2, which parses all of its frames before
#   Twisted dispatches any event; a read of 64 KiB of HEADERS+RST_STREAM
#   pairs (Rapid Reset, CVE-2023-44487) is thousands of streams in one
#   turn. `FrameScanner` finds frame boundaries without parsing, so that
#   at most `H2_STREAMS_PER_TURN` HEADERS and `H2_FRAMES_PER_TURN_IN`
#   frames are parsed per reactor turn; the rest waits for the next turn
#   with the socket not read meanwhile.
# - A stream reset in the same batch as its HEADERS never becomes a
#   request; a stream reset later is a client leaving (its request's
#   ``connectionLost``); resets are budgeted (`ResetBudget`), and past the
#   budget the connection gets one GOAWAY(ENHANCE_YOUR_CALM).
# - After a connection error h2 keeps every later byte in its buffer and
#   raises again on each read (Twisted then writes another GOAWAY), and a
#   TLS transport with a producer registered never closes: one GOAWAY is
#   written, the producer unregistered, the connection closed, and nothing
#   read after it is parsed.
# - Writes to a stream that is gone (reset, or pruned by h2) are dropped:
#   its request's client left.

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

#: At most this many HEADERS frames, and this many frames in all, of one
#: connection are parsed in one reactor turn (h2 costs tens of
#: microseconds a stream in pure Python); what follows waits for the
#: next turn, and the socket is not read meanwhile.
H2_STREAMS_PER_TURN = 20
H2_FRAMES_PER_TURN_IN = 200

#: Streams a client may reset in a burst, and resets a second it earns
#: back; past them, GOAWAY(ENHANCE_YOUR_CALM) and the connection ends.
H2_RESET_BURST = 200
H2_RESETS_PER_SECOND = 50

#: GOAWAY error codes (RFC 9113 §7) the connection owner ends with.
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1

# Frame types and the flag that FrameScanner reads (RFC 9113 §6).
_HEADERS, _PUSH_PROMISE, _CONTINUATION = 0x1, 0x5, 0x9
_END_HEADERS = 0x4
_HEADER_BLOCK_TYPES = (_HEADERS, _PUSH_PROMISE, _CONTINUATION)


class FrameScanner:
    """
    Where the frames of a client's HTTP/2 byte stream begin and end,
    without parsing them (sans-I/O): for bounding how much of a read is
    parsed per reactor turn, and for knowing when the connection is inside
    a header block (HEADERS without END_HEADERS, and its CONTINUATIONs).
    The client preface comes first and is skipped.
    """

    __slots__ = ("_preface", "_skip", "_head", "in_block")

    def __init__(self) -> None:
        self._preface = len(H2_PREFACE)
        #: Payload bytes of the current frame still to come.
        self._skip = 0
        #: The first bytes of a frame header split across reads.
        self._head = b""
        #: Inside a header block: no other frame may come until it ends.
        self.in_block = False

    def scan(self, data: bytes, max_headers: int, max_frames: int) -> int:
        """
        Consume ``data`` up to the first frame that would pass either
        budget (HEADERS frames, frames); returns how many bytes of ``data``
        were consumed (``len(data)`` when both budgets held). What was not
        consumed is to be scanned again, with fresh budgets.
        """
        n = len(data)
        pos = 0
        if self._preface:
            pos = min(self._preface, n)
            self._preface -= pos
        if self._skip:
            take = min(self._skip, n - pos)
            self._skip -= take
            pos += take
        headers = frames = 0
        while pos < n:
            partial = self._head
            need = 9 - len(partial)
            if n - pos < need:
                self._head = partial + data[pos:]
                return n
            head = partial + data[pos : pos + need] if partial else data[pos : pos + 9]
            kind = head[3]
            if frames >= max_frames or (kind == _HEADERS and headers >= max_headers):
                return pos
            self._head = b""
            pos += need
            frames += 1
            if kind == _HEADERS:
                headers += 1
            if kind in _HEADER_BLOCK_TYPES:
                self.in_block = not head[4] & _END_HEADERS
            length = int.from_bytes(head[:3], "big")
            take = min(length, n - pos)
            pos += take
            self._skip = length - take
        return n


class ResetBudget:
    """
    A token bucket of stream resets: `H2_RESET_BURST` at once, refilled
    at `H2_RESETS_PER_SECOND`; `spend` says whether one more is allowed.
    """

    __slots__ = ("_clock", "_tokens", "_at")

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._tokens = float(H2_RESET_BURST)
        self._at = clock.seconds()

    def spend(self) -> bool:
        now = self._clock.seconds()
        # A wall clock stepping back must not drain the bucket.
        elapsed = max(0.0, now - self._at)
        self._at = now
        self._tokens = min(
            float(H2_RESET_BURST), self._tokens + elapsed * H2_RESETS_PER_SECOND
        )
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


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
    "_requestDataReceived",
    "_requestEnded",
    "_handlePriorityUpdate",
    "_tryToWriteControlData",
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
    "_streamCleanupCallbacks",
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


class H2Watcher(Protocol):
    """What an HTTP/2 connection tells the connection that owns it."""

    def h2_state(self, streams: int, in_block: bool) -> None:
        """``streams`` are open; ``in_block``: a header block is being read."""

    def h2_failed(self) -> None:
        """The connection failed or ended: it is closing, nothing more is read."""


def _peer_host(transport: Any) -> str:
    peer = getattr(transport, "getPeer", None)
    return str(getattr(peer(), "host", "-")) if peer is not None else "-"


if H2:
    import h2.errors
    import h2.events
    import h2.exceptions
    import priority as _priority

    _ENHANCE_YOUR_CALM = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    _GONE_STREAM_ERRORS = (
        h2.exceptions.StreamClosedError,
        h2.exceptions.StreamIDTooLowError,
    )

    class BoundedH2Connection(_http2.H2Connection):
        """
        Twisted's ``H2Connection`` with O(1) writes, bounded queues, several
        frames per reactor turn, no busy loop while a stream's window is
        closed, and bounded work for what a client sends (see the comment
        above `FrameScanner`).

        :param watcher: told when the connection's streams or header block
            change, and when it fails (`H2Watcher`).
        """

        _log = Logger()

        def __init__(
            self, reactor: Any = None, watcher: H2Watcher | None = None
        ) -> None:
            super().__init__(reactor)  # type: ignore[no-untyped-call]
            self._drained: set[int] = set()
            self._closing: Any = None
            self._watcher = watcher
            self._scanner = FrameScanner()
            #: What was read but not parsed yet (the socket is not read
            #: while there is some).
            self._held: bytes | None = None
            #: The connection failed: nothing read from now on is parsed.
            self._failed = False
            self._resets = ResetBudget(self._reactor)

        # Receiving.

        def dataReceived(self, data: bytes) -> None:
            if self._failed:
                return
            if self._held is not None:
                # Read before the pause took effect (a TLS record holding
                # several): at most one read's worth.
                self._held += data
                return
            self._parse(data)

        def _parse(self, data: bytes) -> None:
            end = self._scanner.scan(data, H2_STREAMS_PER_TURN, H2_FRAMES_PER_TURN_IN)
            if end < len(data):
                self._held = data[end:]
                data = data[:end]
                transport: Any = self.transport
                transport.pauseProducing()
                self._reactor.callLater(0, self._parse_held)
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                # h2 has queued its GOAWAY.
                self.end(None, "HTTP/2 protocol error")
                return
            self._dispatch(events)
            if not self._failed:
                self._tryToWriteControlData()  # type: ignore[no-untyped-call]
                self._report()

        def _parse_held(self) -> None:
            held, self._held = self._held, None
            if held is None or self._failed or not self._stillProducing:
                return
            self._parse(held)
            if self._held is None and not self._failed:
                transport: Any = self.transport
                transport.resumeProducing()

        def _dispatch(self, events: list[Any]) -> None:
            """Twisted's event loop, without streams the client reset at once."""
            reset = {
                e.stream_id for e in events if isinstance(e, h2.events.StreamReset)
            }
            streams = self.streams
            for event in events:
                if isinstance(event, h2.events.RequestReceived):
                    # A stream reset in the same read never becomes a
                    # request (Rapid Reset costs no handler).
                    if event.stream_id not in reset:
                        self._requestReceived(event)
                elif isinstance(event, h2.events.DataReceived):
                    stream = streams.get(event.stream_id)
                    if stream is None or event.stream_id in reset:
                        # Give the connection's window back all the same.
                        self.conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    else:
                        stream.receiveDataChunk(
                            event.data, event.flow_controlled_length
                        )
                elif isinstance(event, h2.events.StreamEnded):
                    stream = streams.get(event.stream_id)
                    if stream is not None and event.stream_id not in reset:
                        stream.requestComplete()
                elif isinstance(event, h2.events.StreamReset):
                    self._requestAborted(event)
                elif isinstance(event, h2.events.WindowUpdated):
                    self._handleWindowUpdate(event)
                elif isinstance(event, h2.events.PriorityUpdated):
                    self._handlePriorityUpdate(event)  # type: ignore[no-untyped-call]
                elif isinstance(event, h2.events.ConnectionTerminated):
                    self.end(None, "the client sent GOAWAY")
                if self._failed:
                    return

        def _requestReceived(self, event: Any) -> None:
            super()._requestReceived(event)  # type: ignore[no-untyped-call]
            stream_id = event.stream_id
            self._outboundStreamQueues[stream_id] = _CountedQueue(
                lambda: self._drained.add(stream_id)
            )

        def _requestAborted(self, event: Any) -> None:
            # A reset stream is its client leaving (SPEC §4.3): its request
            # learns so; one that never became a request, or has ended
            # already, costs nothing more. Every reset spends the budget.
            if not self._resets.spend():
                self._log.warn(
                    "HTTP/2 client {peer} reset streams faster than "
                    "{rate}/s (burst {burst}); GOAWAY(ENHANCE_YOUR_CALM), "
                    "connection closed",
                    peer=_peer_host(self.transport),
                    rate=H2_RESETS_PER_SECOND,
                    burst=H2_RESET_BURST,
                )
                self.end(_ENHANCE_YOUR_CALM, "too many stream resets")
                return
            stream = self.streams.get(event.stream_id)
            if stream is None:
                return
            stream.connectionLost(
                Failure(ConnectionLost(f"Stream reset with code {event.error_code}"))
            )
            self._requestDone(event.stream_id)

        def _requestDone(self, streamID: int) -> None:  # noqa: N803
            super()._requestDone(streamID)  # type: ignore[no-untyped-call]
            if not self.streams:
                self._report()

        def _report(self) -> None:
            watcher = self._watcher
            if watcher is not None and not self._failed:
                watcher.h2_state(len(self.streams), self._scanner.in_block)

        def end(self, error_code: Any, reason: str) -> None:
            """
            End the connection: one GOAWAY (with ``error_code``, or the one
            h2 queued itself), its streams' requests told the connection was
            lost, the transport closed once the GOAWAY is out; nothing read
            after this is parsed. Idempotent.
            """
            if self._failed:
                return
            self._failed = True
            self._held = None
            if self._watcher is not None:
                # Before the close: reading stops (TLS would go on reading).
                self._watcher.h2_failed()
            if error_code is not None:
                try:
                    self.conn.close_connection(error_code=error_code)
                except h2.exceptions.ProtocolError:
                    pass
            transport: Any = self.transport
            data = self.conn.data_to_send()
            if data:
                transport.write(data)
            # A TLS transport does not close while a producer is registered.
            transport.unregisterProducer()
            transport.loseConnection()
            self.connectionLost(  # type: ignore[no-untyped-call]
                Failure(ConnectionLost(reason)), _cancelTimeouts=False
            )

        # Sending: a stream that is gone (reset, or pruned by h2) has no
        # client left to write to.

        def writeHeaders(  # noqa: N802
            self,
            version: bytes,
            code: bytes,
            reason: bytes,
            headers: Any,
            streamID: int,  # noqa: N803
        ) -> None:
            if streamID not in self.streams:
                return
            headers.insert(0, (b":status", code))
            try:
                self.conn.send_headers(streamID, headers)
            except _GONE_STREAM_ERRORS:
                return
            self._tryToWriteControlData()  # type: ignore[no-untyped-call]

        def writeDataToStream(self, streamID: int, data: bytes) -> None:  # noqa: N802,N803
            if streamID in self.streams:
                super().writeDataToStream(streamID, data)  # type: ignore[no-untyped-call]

        def endRequest(self, streamID: int) -> None:  # noqa: N802,N803
            if streamID in self.streams:
                super().endRequest(streamID)  # type: ignore[no-untyped-call]

        def abortRequest(self, streamID: int) -> None:  # noqa: N802,N803
            if streamID not in self.streams:
                return
            try:
                self.conn.reset_stream(streamID)
            except _GONE_STREAM_ERRORS:
                pass
            if self._tryToWriteControlData():  # type: ignore[no-untyped-call]
                self._requestDone(streamID)

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
                    self._requestDone(stream_id)
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

    def switch_to_h2(
        channel: Any, reactor: Any, watcher: H2Watcher | None = None
    ) -> Any:
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
        connection: Any = BoundedH2Connection(reactor, watcher)
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

    def switch_to_h2(
        channel: Any, reactor: Any, watcher: H2Watcher | None = None
    ) -> Any:
        raise RuntimeError("HTTP/2 switching is unavailable with this Twisted")
