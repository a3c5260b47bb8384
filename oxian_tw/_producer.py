# -*- test-case-name: tests.test_stream -*-
"""
`Stream`: a streamed response body that runs at the client's pace
(SPEC §4.1–§4.3), and how its bytes reach the network.

Writes are coalesced per reactor turn: a stream holds what it is given and
hands it on, framed as one chunk, when the turn ends (`Flusher`: one
``callLater(0)`` for every stream written during the turn, run before the
reactor next waits for I/O) or at once when it holds more than its
high-water mark (64 KiB). So a burst of events to one connection leaves in
one system call, a lone event still leaves in the turn it was written, and
a bulk body moves in large sends. Bytes are handed to the socket directly
when the transport holds nothing (`oxian_tw._fastpath.DirectWriter`), else
to the transport.

The stream is the ``IPushProducer`` registered on the request: the
transport pauses it when its buffer passes its own high-water mark and
resumes it when the buffer has drained. Write Deferreds follow: they fire
``True`` at once while the stream holds no more than the high-water mark
and is not paused, and later otherwise, so a handler that awaits each write
has about one high-water mark of its body in this process. Writes that were
not awaited are held up to the buffer limit; past it the client is too
slow and the connection is aborted.

Strategies, as twisted.web's static producers: `Stream` (a body),
`HeadStream` (``HEAD``: the head, then nothing), and `_FileReader` (a file
pulled block by block into a stream). Each starts with an explicit
``start()``; stopping is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IPullProducer,
    IPushProducer,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest
from zope.interface import implementer

from ._coroutines import drive
from ._errors import StreamClosed
from ._fastpath import DirectWriter
from ._relay import relay
from ._streaming import pump_chunks

if TYPE_CHECKING:
    from ._compression import Encoder
    from ._exchange import Exchange

#: Bytes a stream holds before it sends at once instead of at the end of
#: the turn; also when a write's Deferred waits.
HIGH_WATER = 64 * 1024

#: What awaited writes may cost in one reactor turn before the next one
#: waits for the turn's end: bytes, each write counting `WRITE_COST` more
#: (about 1,000 small writes, or sixty of 64 KiB: a turn holds the
#: reactor from other connections for ~1-2 ms at most).
TURN_BUDGET = 4 * 1024 * 1024
WRITE_COST = 4096

#: Bytes a pull source (a piped file) reads at a time.
BLOCK_SIZE = 64 * 1024

_OPEN, _CLOSING, _ENDED = "open", "closing", "ended"

#: Headers of every streamed response unless set: caches and proxies
#: (nginx) must not hold a streamed body back.
NO_BUFFERING = (
    (b"Cache-Control", b"no-cache, no-transform"),
    (b"X-Accel-Buffering", b"no"),
)


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


def _fail_all(waiting: list[Deferred[bool]]) -> None:
    """
    Fail each waiting write with `StreamClosed`. A write nobody awaits ends
    as ``False`` instead of an unhandled error.
    """
    for d in waiting:
        d.errback(StreamClosed("the client went away"))
        d.addErrback(_closed_means_false)


class _HeadSent(Headers):
    """
    The response headers of an HTTP/1.1 response whose head is on the
    wire: none, shared by every such response. A header set now would
    never be sent (Twisted ignores it too), so setting one does nothing.
    """

    def setRawHeaders(self, name: str | bytes, values: Any) -> None:
        pass

    def addRawHeader(self, name: str | bytes, value: str | bytes) -> None:
        pass

    def removeHeader(self, name: str | bytes) -> None:
        pass


#: What a streamed response's ``responseHeaders`` are once its head is sent.
HEAD_SENT = _HeadSent()


class Flusher:
    """
    The end of the reactor turn for an app's streams and connections:
    each stream written during the turn sends what it holds, in one piece,
    and each plain TCP connection what it wrote
    (`oxian_tw._channel.OxianChannel`), in the order they were written,
    from one ``callLater(0)`` (which runs before the reactor next waits
    for I/O).

    :param clock: returns the clock to schedule on (resolved late).
    """

    __slots__ = ("_clock", "_dirty", "_call")

    def __init__(self, clock: Callable[[], IReactorTime]) -> None:
        self._clock = clock
        self._dirty: list[Stream] = []
        self._call: IDelayedCall | None = None

    def add(self, stream: Stream) -> None:
        """Have ``stream`` send what it holds when this turn ends."""
        self._dirty.append(stream)
        if self._call is None:
            self._call = self._clock().callLater(0, self._run)

    def now(self) -> float:
        """The clock's time."""
        return self._clock().seconds()

    def _run(self) -> None:
        self._call = None
        dirty, self._dirty = self._dirty, []
        now = self._clock().seconds()
        for stream in dirty:
            stream._turn_ended(now)


@implementer(IPushProducer)
class Stream:
    """
    The body of a streamed response (``ctx.response.stream(...)``).

    Every write returns a Deferred that fires ``True`` once the bytes are
    accepted below the high-water mark, ``False`` if the stream was already
    closed, and fails with `StreamClosed` if the client leaves while it
    waits.

    :param request: the ``twisted.web`` request whose body this is.
    :param flusher: the app's `Flusher`.
    :param buffer_limit: bytes of unawaited writes to hold for a slow
        client before aborting; ``None`` when the owner bounds them itself.
    :param owner: the request's owner, told when the stream has ended.
    :param request_id: for log lines.
    :param keep_open: stay open after the handler finishes, until `close`.

    Its public API is `write`, `close`, `closed` and `done` (SPEC §4), and
    the ``IPushProducer`` methods the transport calls. What the framework
    keeps on it is private: ``_resumed`` (how many times the transport
    resumed it: a paused stream whose count has not moved has not drained
    since), ``_broken`` (it ended without `close`: the client left, the
    connection was aborted, or it answered ``HEAD``), ``_last_write`` (when
    bytes were last written, by the app's clock) and ``_end_reason`` (how a
    `close` ends it, for the access log).
    """

    _log = Logger()
    # Slots: every open stream pays for its attributes, idle or not.
    __slots__ = (
        "_head_held",
        "_on_drained",
        "_keep_open",
        "_broken",
        "_resumed",
        "_last_write",
        "_end_reason",
        "_request",
        "_owner",
        "_flusher",
        "_buffer_limit",
        "_request_id",
        "_state",
        "_paused",
        "_held",
        "_held_bytes",
        "_dirty",
        "_turn_cost",
        "_waiting",
        "_done",
        "_puller",
        "_remaining",
        "_direct",
        "_joined",
        "_chunked",
    )

    def __init__(
        self,
        request: IRequest,
        owner: Exchange,
        *,
        flusher: Flusher,
        buffer_limit: int | None,
        request_id: str,
        keep_open: bool = False,
    ) -> None:
        self._keep_open = keep_open
        #: Called once what is held has gone to the transport and the
        #: transport is not paused (a lagging hub subscriber catches up).
        self._on_drained: Callable[[], None] | None = None
        #: The response head waits (`_start` with ``hold_head``): what is
        #: written is held until `_release_head`.
        self._head_held = False
        self._broken = False
        self._resumed = 0
        self._last_write = 0.0
        #: How the stream will say it ended when it is closed.
        self._end_reason = "complete"
        self._request: Any = request
        self._owner: Exchange | None = owner
        self._flusher = flusher
        self._buffer_limit = buffer_limit
        self._request_id = request_id
        self._state = _OPEN
        self._paused = False
        # Bytes written, not yet handed on (one chunk as is, more in a
        # list), and the Deferreds of writes that wait for the transport to
        # drain. Lists are made only when needed: an idle stream needs
        # neither, and the one chunk most streams get in a turn (an event)
        # then allocates no container the garbage collector tracks.
        self._held: bytes | list[bytes] | None = None
        self._held_bytes = 0
        self._dirty = False
        self._turn_cost = 0
        self._waiting: list[Deferred[bool]] | None = None
        self._done: list[Deferred[None]] | None = None
        self._puller: _FileReader | None = None
        self._remaining: int | None = None
        self._direct: DirectWriter | None = None
        self._joined = False
        self._chunked = False

    def _start(self, hold_head: bool = False) -> None:
        """
        Start producing and send the response head; with ``hold_head``, the
        head (and what is written meanwhile) waits for `_release_head`.
        """
        request = self._request
        length = request.responseHeaders.getRawHeaders(b"content-length")
        self._remaining = int(length[0]) if length else None
        request.registerProducer(self, True)
        if hold_head:
            self._head_held = True
            return
        self._send_head()

    def _release_head(self) -> None:
        """Send the held head, then what was written meanwhile; idempotent."""
        if self._head_held and self._state is not _ENDED:
            self._send_head()
            self._send()

    def _send_head(self) -> None:
        self._head_held = False
        request = self._request
        request.write(b"")
        # The head is a write: a stream's silence (heartbeats) starts here.
        self._last_write = self._flusher.now()
        self._chunked = bool(request.chunked)
        channel = request.channel
        if isinstance(channel, HTTPChannel):
            self._direct = DirectWriter.for_transport(channel.transport)
            # The head is on the wire and HTTP/1.1 reads its headers no more:
            # a long-lived stream need not keep them (~0.8 KiB of lists and
            # a grown dict per idle SSE stream, issue 33).
            request.responseHeaders = HEAD_SENT
        else:
            # An HTTP/2 stream frames each write: one write per flush.
            self._joined = True

    @property
    def closed(self) -> bool:
        """Whether writes are no longer accepted."""
        return self._state is not _OPEN

    @property
    def _ended(self) -> bool:
        return self._state is _ENDED

    @property
    def _queued(self) -> int:
        """Bytes written and held here, not yet handed to the network."""
        return self._held_bytes

    @property
    def done(self) -> Deferred[None]:
        """
        A new Deferred that fires (never fails) when the stream has ended:
        closed and flushed, or the client left.
        """
        if self._state is _ENDED:
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
        if self._state is not _OPEN:
            return succeed(False)
        return self._accept(data)

    def close(self) -> None:
        """End the body once what was written has been handed on."""
        if self._state is not _OPEN:
            return
        self._state = _CLOSING
        if self._head_held:
            self._release_head()
        elif not self._held:
            self._finish()

    def pipe(self, source: Any) -> Deferred[None]:
        """
        Stream ``source``: a binary or text file object (read in blocks by a
        pull producer, closed at the end), an iterable or an async iterable
        of chunks, or an HTTP response (``IResponse``: what treq and
        ``Agent`` return; fetch with ``unbuffered=True``), paused while the
        client's window is full and dropped when the client leaves. Fires
        when the source is exhausted or the stream closed.
        """
        if hasattr(source, "deliverBody"):
            return relay(self, source)
        if hasattr(source, "read"):
            return self._pull_file(source)
        if hasattr(source, "__aiter__"):
            return drive(pump_chunks(self, source))
        if isinstance(source, str | bytes | bytearray | memoryview):
            raise TypeError("pipe() takes a file or an iterable; use write() for data")
        return Deferred.fromCoroutine(self._pipe_iter(iter(source)))

    def _pull_file(self, file: Any, length: int | None = None) -> Deferred[None]:
        """
        Stream ``length`` bytes (all when ``None``) of ``file`` from its
        current position through a pull producer; the file is closed at the
        end.
        """
        if self._puller is not None:
            raise RuntimeError("this stream is already piping a file")
        reader = _FileReader(self, file, length)
        if self._state is not _OPEN:
            reader.stopProducing()
            return reader.deferred
        self._puller = reader
        self._pull()
        return reader.deferred

    def _abort(self, reason: str = "aborted") -> None:
        """
        Drop the connection: the client sees an incomplete body. ``reason``
        is how the access log says it ended.
        """
        if self._state is _ENDED:
            return
        channel = getattr(self._request, "channel", None)
        transport = getattr(channel, "transport", None)
        if transport is None and hasattr(channel, "abortConnection"):
            # An HTTP/2 stream has no transport: it is its own, and
            # aborting it resets only that stream.
            transport = channel
        if transport is not None:
            getattr(transport, "abortConnection", transport.loseConnection)()
        # Called from a write or the handler's end: the handler may be
        # running, too early to cancel it.
        self._end(False, reason)

    def _lost(self) -> None:
        """
        The client is gone: fail what waits with `StreamClosed`, fire
        ``done``, stop the handler. Idempotent.
        """
        self._end(True, "client_gone")

    # IPushProducer, called by the channel on behalf of the transport.

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        if self._state is _ENDED:
            return
        self._paused = False
        self._resumed += 1
        self._send()
        self._pull()

    def stopProducing(self) -> None:
        self._lost()

    # Internals.

    def _accept(self, data: bytes) -> Deferred[bool]:
        """`write` of ``data``, already bytes, to an open stream."""
        remaining = self._remaining
        if remaining is not None:
            if len(data) > remaining:
                self._log.error(
                    "A stream wrote more than its Content-Length; connection "
                    "aborted (request {request_id})",
                    request_id=self._request_id,
                )
                self._abort()
                return succeed(False)
            self._remaining = remaining - len(data)
        self._push(data)
        if self._state is _ENDED:
            return succeed(False)
        if self._paused or self._waiting:
            return self._wait()
        # A socket that takes every write at once would let an awaiting
        # loop run to its end without giving the reactor a turn (another
        # connection's GET waited 0.8 s behind 1,000,000 small writes):
        # past a turn's budget, the write resolves in the next turn.
        self._turn_cost += len(data) + WRITE_COST
        if self._turn_cost > TURN_BUDGET:
            return self._wait()
        return succeed(True)

    def _wait(self) -> Deferred[bool]:
        """A Deferred for a write that waits for the transport."""
        d: Deferred[bool] = Deferred()
        if self._waiting is None:
            self._waiting = [d]
        else:
            self._waiting.append(d)
        return d

    def _push(self, data: bytes) -> None:
        """Hold ``data`` for the network; no Deferred (the hub's fan-out)."""
        if not data:
            # An empty chunk would end a chunked body.
            return
        held = self._held
        if held is None:
            self._held = data
        elif isinstance(held, bytes):
            self._held = [held, data]
        else:
            held.append(data)
        self._held_bytes += len(data)
        if not self._dirty:
            self._dirty = True
            self._flusher.add(self)
        if self._paused:
            limit = self._buffer_limit
            if limit is not None and self._held_bytes > limit:
                self._too_slow()
        elif self._held_bytes > HIGH_WATER:
            self._send()

    def _discard(self) -> None:
        """Forget what is held, unsent (a held head answered otherwise)."""
        self._held, self._held_bytes = None, 0

    def _turn_ended(self, now: float) -> None:
        """The reactor turn in which this stream was written is ending."""
        self._dirty = False
        self._turn_cost = 0
        self._last_write = now
        self._send()

    def _send(self) -> None:
        """Hand what is held to the network, unless paused; then release writes."""
        if self._paused or self._state is _ENDED or self._head_held:
            return
        held = self._held
        if held:
            size = self._held_bytes
            self._held, self._held_bytes = None, 0
            self._hand_on(held, size)
            if self._paused or self._state is _ENDED:
                return
        if self._state is _CLOSING:
            self._finish()
        waiting = self._waiting
        if waiting:
            self._waiting = None
            for d in waiting:
                d.callback(True)
        drained = self._on_drained
        if drained is not None and not self._held_bytes and not self._paused:
            self._on_drained = None
            drained()

    def _hand_on(self, held: bytes | list[bytes], size: int) -> None:
        """Write ``held`` (``size`` bytes) to the connection, framed."""
        request = self._request
        if isinstance(held, bytes):
            parts = [b"%x\r\n" % size, held, b"\r\n"] if self._chunked else [held]
        else:
            parts = held
            if self._chunked:
                parts.insert(0, b"%x\r\n" % size)
                parts.append(b"\r\n")
        request.sentLength += size
        direct = self._direct
        if direct is not None:
            # A response before this one may wait for the end of the turn
            # in the channel (`oxian_tw._channel.OxianChannel._turn_ended`):
            # it goes first, in the same send.
            take = getattr(request.channel, "take_pending", None)
            pending = take() if take is not None else None
            if pending:
                parts = pending + parts
        if direct is None or not direct.send(parts):
            if self._joined:
                request.channel.write(b"".join(parts))
            else:
                request.channel.writeSequence(parts)

    def _pull(self) -> None:
        while self._puller is not None and not self._paused and self._state is _OPEN:
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
        self._abort("too_slow")

    def _finish(self) -> None:
        if self._remaining:
            self._log.error(
                "A stream closed {missing} bytes short of its Content-Length; "
                "connection aborted (request {request_id})",
                missing=self._remaining,
                request_id=self._request_id,
            )
            self._abort()
            return
        self._state = _ENDED
        self._stop_puller()
        request = self._request
        request.unregisterProducer()
        request.finish()
        # Everything written is with the transport now.
        waiting, self._waiting = self._waiting, None
        for d in waiting or ():
            d.callback(True)
        self._fire_done(self._end_reason, False, True)

    def _end(self, immediate: bool, reason: str) -> None:
        if self._state is _ENDED:
            return
        self._state = _ENDED
        self._broken = True
        waiting, self._waiting = self._waiting, None
        self._held, self._held_bytes = None, 0
        self._stop_puller(StreamClosed("the client went away"))
        _fail_all(waiting or [])
        self._fire_done(reason, True, immediate)

    def _fire_done(self, reason: str, stop_handler: bool, immediate: bool) -> None:
        done, self._done = self._done, None
        for d in done or ():
            d.callback(None)
        owner, self._owner = self._owner, None
        if owner is not None:
            owner.stream_ended(reason, stop_handler, immediate)

    async def _pipe_iter(self, iterator: Any) -> None:
        try:
            for chunk in iterator:
                if not await self.write(chunk):
                    return
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()


class CompressedStream(Stream):
    """
    A `Stream` whose body is compressed (SPEC §17): what a turn hands on
    is compressed and flushed as one piece, so the client can decode every
    event or write of that turn at once; the compressed body's end is
    written before the response ends. The uncompressed bytes held are
    what the buffer limit and budget count; the encoder's own memory is
    taken off them (`compression_memory`).

    :param encoder: the coding's encoder (`oxian_tw._compression`).
    """

    __slots__ = ("_encoder",)

    def __init__(self, *args: Any, encoder: Encoder, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoder = encoder

    def _hand_on(self, held: bytes | list[bytes], size: int) -> None:
        data = held if isinstance(held, bytes) else b"".join(held)
        packed = self._encoder.compress(data)
        if packed:
            super()._hand_on(packed, len(packed))

    def _finish(self) -> None:
        if not self._remaining:
            tail = self._encoder.finish()
            if tail:
                super()._hand_on(tail, len(tail))
        super()._finish()


def compression_memory(stream: Stream) -> int:
    """The bytes ``stream``'s compressor may hold (0: not compressed)."""
    if isinstance(stream, CompressedStream):
        return stream._encoder.memory
    return 0


class HeadStream(Stream):
    """
    The body of a ``HEAD`` response: the head is sent and the request
    finished at `_start`; writes wait until the handler is stopped (`_lost`,
    on the next turn), exactly as after a disconnect.
    """

    __slots__ = ()

    def _start(self, hold_head: bool = False) -> None:
        request = self._request
        request.write(b"")
        request.finish()

    def close(self) -> None:
        """Nothing to end: the response is complete; the app stops the handler."""

    def _accept(self, data: bytes) -> Deferred[bool]:
        return self._wait()

    def _push(self, data: bytes) -> None:
        pass

    def _pull_file(self, file: Any, length: int | None = None) -> Deferred[None]:
        reader = _FileReader(self, file, length)
        reader.stopProducing()
        return reader.deferred

    def _lost(self) -> None:
        """The response was complete at `_start`: stop the handler."""
        self._end(True, "complete")


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
