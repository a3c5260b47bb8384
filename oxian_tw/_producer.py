# -*- test-case-name: tests.test_stream -*-
"""
`Stream`: a streamed response body that runs at the client's pace
(SPEC §4.1–§4.3).

The stream is the ``IPushProducer`` registered on the request. The transport
pauses it when its buffer passes its high-water mark (64 KiB) and resumes it
when the buffer has drained; write Deferreds follow that state, so a handler
that awaits each write never has more than about one high-water mark of its
body in this process. Writes that were not awaited queue here, up to the
buffer limit; past it the client is too slow and the connection is aborted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import tcp
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPullProducer, IPushProducer
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from zope.interface import implementer

from ._errors import StreamClosed

#: Bytes a pull source (a piped file) reads at a time.
BLOCK_SIZE = 64 * 1024

_OPEN, _CLOSING, _ENDED = "open", "closing", "ended"


def as_bytes(chunk: Any) -> bytes:
    """
    ``chunk`` as ``bytes``: ``str`` as UTF-8, any other bytes-like value
    copied, so a buffer the caller reuses never changes what was written.
    """
    if type(chunk) is bytes:
        return chunk
    if isinstance(chunk, str):
        return chunk.encode("utf-8")
    try:
        return bytes(memoryview(chunk))
    except TypeError:
        raise TypeError(
            f"a stream chunk must be str or bytes-like, not {type(chunk).__name__}"
        ) from None


def _closed_means_false(failure: Any) -> bool:
    failure.trap(StreamClosed)
    return False


def _fail_all(waiting: Any) -> None:
    """
    Fail each waiting write with `StreamClosed`. A write nobody awaits ends
    as ``False`` instead of an unhandled error.
    """
    for d in waiting:
        d.errback(StreamClosed("the client went away"))
        d.addErrback(_closed_means_false)


@implementer(IPushProducer)
class Stream:
    """
    The body of a streamed response (``ctx.response.stream(...)``).

    Every write returns a Deferred that fires ``True`` once the bytes are
    accepted below the high-water mark, ``False`` if the stream was already
    closed, and fails with `StreamClosed` if the client leaves while it
    waits.

    :param buffer_limit: bytes of unawaited writes to hold for a slow
        client before aborting; ``None`` when the owner bounds them itself.
    :ivar keep_open: stay open after the handler finishes, until `close`.
    :ivar resumed: how many times the transport resumed the stream; a
        paused stream whose count has not moved has not drained since.
    :ivar broken: the stream ended without `close`: the client left, the
        connection was aborted, or it answered ``HEAD``.
    """

    _log = Logger()
    # Slots: every open stream pays for its attributes, idle or not.
    __slots__ = (
        "keep_open",
        "broken",
        "resumed",
        "on_end",
        "_request",
        "_buffer_limit",
        "_request_id",
        "_on_lost",
        "_state",
        "_paused",
        "_head_only",
        "_blocked",
        "_queue",
        "_queued",
        "_done",
        "_puller",
        "_remaining",
        "_direct",
    )

    def __init__(
        self,
        request: IRequest,
        *,
        buffer_limit: int | None,
        request_id: str,
        keep_open: bool = False,
        on_lost: Callable[[bool], None] = lambda immediate: None,
    ) -> None:
        self.keep_open = keep_open
        self.broken = False
        #: Called with nothing once the stream has ended, before ``done``.
        self.on_end: Callable[[], None] | None = None
        self._request = request
        self._buffer_limit = buffer_limit
        self._request_id = request_id
        self._on_lost = on_lost
        self._state = _OPEN
        self._paused = False
        self.resumed = 0
        self._head_only = request.method == b"HEAD"
        # Deferreds of chunks already handed to the transport, waiting for
        # it to drain below its high-water mark. (Lists, not deques: an
        # empty deque costs 600 bytes, and every idle stream has two.)
        self._blocked: list[Deferred[bool]] = []
        # Chunks written while paused, not yet handed to the transport.
        self._queue: list[tuple[bytes, Deferred[bool]]] = []
        self._queued = 0
        self._done: list[Deferred[None]] | None = None
        self._puller: _FileReader | None = None
        length = request.responseHeaders.getRawHeaders(b"content-length")
        self._remaining = int(length[0]) if length else None

        request.registerProducer(self, True)
        # The connection may be paused by an earlier response on it.
        if getattr(request.channel, "_waitingForTransport", False):
            self._paused = True
        request.write(b"")
        self._direct = _DirectWriter.for_request(request)
        if self._head_only:
            # HEAD: the head is all there is. Writes wait until the app
            # stops the handler (`lost`), exactly as after a disconnect.
            request.unregisterProducer()
            request.finish()

    @property
    def closed(self) -> bool:
        """Whether writes are no longer accepted."""
        return self._state != _OPEN

    @property
    def paused(self) -> bool:
        """Whether the client's window is full (writes wait)."""
        return self._paused

    @property
    def queued(self) -> int:
        """Bytes written while paused, held here until the client has room."""
        return self._queued

    @property
    def done(self) -> Deferred[None]:
        """
        A new Deferred that fires (never fails) when the stream has ended:
        closed and flushed, or the client left.
        """
        if self._state == _ENDED:
            return succeed(None)
        d: Deferred[None] = Deferred()
        if self._done is None:
            self._done = []
        self._done.append(d)
        return d

    def write(self, chunk: Any) -> Deferred[bool]:
        """
        Send ``chunk`` (``str`` as UTF-8, or bytes-like, copied).

        :return: a Deferred firing ``True`` when the bytes are accepted below
            the high-water mark, ``False`` if the stream is closed.
        """
        data = as_bytes(chunk)
        if self._state != _OPEN:
            return succeed(False)
        return self._accept(data)

    def close(self) -> None:
        """End the body once what was written has been handed on."""
        if self._state != _OPEN or self._head_only:
            return
        self._state = _CLOSING
        if not self._queue:
            self._finish()

    def pipe(self, source: Any) -> Deferred[None]:
        """
        Stream ``source``: a binary or text file object (read in blocks by a
        pull producer, closed at the end), an iterable or an async iterable
        of chunks. Fires when the source is exhausted or the stream closed.
        """
        if hasattr(source, "read"):
            return self.pull(source)
        if hasattr(source, "__aiter__"):
            return Deferred.fromCoroutine(self._pipe_async(source))
        if isinstance(source, str | bytes | bytearray | memoryview):
            raise TypeError("pipe() takes a file or an iterable; use write() for data")
        return Deferred.fromCoroutine(self._pipe_iter(iter(source)))

    def pull(self, file: Any, length: int | None = None) -> Deferred[None]:
        """
        Stream ``length`` bytes (all when ``None``) of ``file`` from its
        current position through a pull producer; the file is closed at the
        end.
        """
        if self._puller is not None:
            raise RuntimeError("this stream is already piping a file")
        reader = _FileReader(self, file, length)
        if self._state != _OPEN or self._head_only:
            reader.stopProducing()
            return reader.deferred
        self._puller = reader
        self._pull()
        return reader.deferred

    def abort(self) -> None:
        """Drop the connection: the client sees an incomplete body."""
        if self._state == _ENDED:
            return
        transport = self._request.channel.transport
        getattr(transport, "abortConnection", transport.loseConnection)()
        # Called from a write or the handler's end: the handler may be
        # running, too early to cancel it.
        self._end(immediate=False)

    def lost(self) -> None:
        """
        The client is gone (or a HEAD response is complete): fail what
        waits with `StreamClosed` and fire ``done``. Idempotent.
        """
        self._end(immediate=True)

    def _end(self, immediate: bool) -> None:
        if self._state == _ENDED:
            return
        self._head_only = False
        self._state = _ENDED
        self.broken = True
        waiting = list(self._blocked) + [d for _, d in self._queue]
        self._blocked.clear()
        self._queue.clear()
        self._queued = 0
        self._stop_puller(StreamClosed("the client went away"))
        _fail_all(waiting)
        self._fire_done()
        self._on_lost(immediate)

    # IPushProducer, called by the channel on behalf of the transport.

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        if self._state == _ENDED:
            return
        self._paused = False
        self.resumed += 1
        ready, self._blocked = self._blocked, []
        queue, self._queue = self._queue, []
        sent = 0
        while sent < len(queue) and not self._paused:
            data, d = queue[sent]
            sent += 1
            self._queued -= len(data)
            ready.append(d)
            self._send(data)
            if self._state == _ENDED:
                _fail_all(ready + [d for _, d in queue[sent:]])
                return
            if self._paused:
                self._blocked.append(ready.pop())
        if sent < len(queue):
            self._queue = queue[sent:]
        if self._state == _CLOSING and not self._queue:
            self._finish()
        for d in ready:
            d.callback(True)
        self._pull()

    def stopProducing(self) -> None:
        self.lost()

    # Internals.

    def _accept(self, data: bytes) -> Deferred[bool]:
        d: Deferred[bool]
        if self._head_only or self._paused or self._queue:
            d = Deferred()
            if not self._head_only:
                self._queue.append((data, d))
                self._queued += len(data)
                limit = self._buffer_limit
                if limit is not None and self._queued > limit:
                    self._too_slow()
                    return d
            else:
                self._blocked.append(d)
            return d
        self._send(data)
        if self._state == _ENDED:
            return succeed(False)
        if self._paused:
            d = Deferred()
            self._blocked.append(d)
            return d
        return succeed(True)

    def _send(self, data: bytes) -> None:
        if self._remaining is not None:
            self._remaining -= len(data)
            if self._remaining < 0:
                self._log.error(
                    "A stream wrote more than its Content-Length; connection "
                    "aborted (request {request_id})",
                    request_id=self._request_id,
                )
                self.abort()
                return
        if self._direct is None or not self._direct.write(data):
            self._request.write(data)

    def _pull(self) -> None:
        while self._puller is not None and not self._paused and self._state == _OPEN:
            self._puller.resumeProducing()

    def _stop_puller(self, reason: Exception | None = None) -> None:
        puller, self._puller = self._puller, None
        if puller is not None:
            puller.stop(reason)

    def _pulled_all(self) -> None:
        self._puller = None

    def _too_slow(self) -> None:
        self._log.error(
            "Stream buffer limit ({limit} bytes) exceeded: client too slow; "
            "await the write to apply backpressure. Connection aborted "
            "(request {request_id})",
            limit=self._buffer_limit,
            request_id=self._request_id,
        )
        self.abort()

    def _finish(self) -> None:
        if self._remaining:
            self._log.error(
                "A stream closed {missing} bytes short of its Content-Length; "
                "connection aborted (request {request_id})",
                missing=self._remaining,
                request_id=self._request_id,
            )
            self.abort()
            return
        self._state = _ENDED
        self._stop_puller()
        request = self._request
        request.unregisterProducer()
        request.finish()
        # The bytes of blocked writes are with the transport; nobody should
        # keep waiting for a resume that will not come.
        blocked = list(self._blocked)
        self._blocked.clear()
        for d in blocked:
            d.callback(True)
        self._fire_done()

    def _fire_done(self) -> None:
        done, self._done = self._done, None
        if self.on_end is not None:
            self.on_end()
        for d in done or ():
            d.callback(None)

    async def _pipe_iter(self, iterator: Any) -> None:
        try:
            for chunk in iterator:
                if not await self.write(chunk):
                    return
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    async def _pipe_async(self, source: Any) -> None:
        iterator = source.__aiter__()
        try:
            async for chunk in iterator:
                if not await self.write(chunk):
                    return
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()


class _DirectWriter:
    """
    Sends a chunk straight to the socket when the transport has nothing
    buffered, as asyncio does, instead of queueing it for the next reactor
    turn. Against a client that keeps up this saves a reactor iteration, two
    ``epoll_ctl`` calls and a user-space copy per chunk; chunked framing
    goes out in the same ``sendmsg``, so a chunk is never copied. What the
    kernel does not take goes to the transport, whose buffer then pauses
    us as usual: backpressure is unchanged.

    Only for plain TCP (`for_request`); TLS, HTTP/2 and in-memory
    transports always take the transport's path.
    """

    #: Bytes sent directly before one chunk takes the transport's path,
    #: so a client that always keeps up cannot keep the reactor from
    #: serving other connections.
    TURN_BYTES = 4 * 1024 * 1024
    __slots__ = ("_request", "_transport", "_socket", "_chunked", "_turn")

    def __init__(self, request: Any, transport: Any) -> None:
        self._request = request
        self._transport = transport
        self._socket = transport.socket
        self._chunked = bool(request.chunked)
        self._turn = self.TURN_BYTES

    @classmethod
    def for_request(cls, request: Any) -> _DirectWriter | None:
        """A writer for ``request``, or ``None`` when it is not on plain TCP."""
        transport = getattr(request.channel, "transport", None)
        if (
            isinstance(transport, tcp.Connection)
            and not transport.TLS
            and hasattr(transport, "_tempDataLen")
            and hasattr(transport.socket, "sendmsg")
        ):
            return cls(request, transport)
        return None

    def write(self, data: bytes) -> bool:
        """Send ``data`` directly; ``False`` when the transport must."""
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
        parts = [b"%x\r\n" % len(data), data, b"\r\n"] if self._chunked else [data]
        try:
            sent = self._socket.sendmsg(parts)
        except BlockingIOError:
            sent = 0
        except OSError:
            # Let the transport meet the error and close as it always does.
            return False
        self._turn -= sent
        self._request.sentLength += len(data)
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


@implementer(IPullProducer)
class _FileReader:
    """
    Reads a file block by block into a `Stream` each time the stream asks
    (the stream calls `resumeProducing` while the transport has room).
    """

    def __init__(self, stream: Stream, file: Any, length: int | None) -> None:
        self.deferred: Deferred[None] = Deferred()
        self._stream = stream
        self._file = file
        self._remaining = length

    def resumeProducing(self) -> None:
        size = BLOCK_SIZE
        if self._remaining is not None:
            size = min(size, self._remaining)
        try:
            data = self._file.read(size) if size else b""
        except Exception as exc:
            self._end()
            self.deferred.errback(exc)
            return
        if not data:
            self._end()
            self.deferred.callback(None)
            return
        if self._remaining is not None:
            self._remaining -= len(data)
        self._stream._accept(as_bytes(data))

    def stopProducing(self) -> None:
        self.stop(None)

    def stop(self, reason: Exception | None) -> None:
        """Stop reading: fire with ``None``, or fail with ``reason``."""
        if self.deferred.called:
            return
        self._end()
        if reason is None:
            self.deferred.callback(None)
        else:
            self.deferred.errback(reason)

    def _end(self) -> None:
        self._stream._pulled_all()
        self._file.close()
