# -*- test-case-name: tests.test_llhttp -*-
"""
The HTTP/1.1 channel that parses requests in C: `LlhttpChannel`, an
`oxian_tw._channel.OxianChannel` whose read side is ``httptools`` (llhttp,
the parser of uvicorn and Node.js) instead of Twisted's line parser in
Python. Everything after the parse is Twisted's: the request is the site's
``twisted.web`` request, built from the parsed head and fed its body as
``HTTPChannel`` feeds it (``gotLength``, ``handleContentChunk``,
``requestReceived``), and responses, persistence, producers and
``requestDone`` are ``HTTPChannel``'s own. A handler, ``ctx.request.raw``,
Klein and a plain ``twisted.web`` ``Site`` see the same request either way;
a foreign site keeps Twisted's channel.

The rules (docs/deployment.md, "HTTP/1.1 parsing"), the same on both paths
unless said:

- a malformed request line, header, framing or chunk is a JSON 400 and
  the connection closes; a ``Transfer-Encoding`` other than exactly
  ``chunked``, two of them, ``Content-Length`` with ``Transfer-Encoding``
  or two ``Content-Length`` s: 400 (request smuggling); more than
  ``HTTPChannel.maxHeaders`` (500) header fields: 400; a head over
  `oxian_tw._connection.MAX_HEAD` bytes: 431;
- only ``HTTP/1.0`` and ``HTTP/1.1``: 400 for any other version;
- a method llhttp does not know (it knows the registered ones: ``GET`` to
  ``PATCH``, WebDAV's, ``PURGE``, ``QUERY``...) is any other token, which a
  route may export: Twisted's parser reads the connection from that
  request on. Only behind another request in the same read (pipelined)
  is it refused, **501**, in its turn;
- header values are RFC 9110's: a control character (``DEL``, ``NUL``...)
  or an obsolete line folding in one is a 400 here, where Twisted's parser
  takes all but ``NUL``/``CR``/``LF`` and unfolds lines;
- header values lose trailing blanks (as Twisted's); trailer fields of a
  chunked body are read and dropped (as Twisted's);
- ``Expect: 100-continue`` on an HTTP/1.1 request whose body is still to
  come: ``100 Continue`` after ``gotLength`` (a body refused there is not
  invited);
- pipelining: the head-of-line request is handled alone; bytes that arrive
  meanwhile are held, and reading stops once `HELD_LIMIT` bytes are held
  (Twisted's own figure). Requests already parsed from the same read wait
  in order, at most `MAX_QUEUED`: past that the connection answers those
  and closes (RFC 9112 §9.3.2: the client retries what was not answered);
  a malformed one is answered in its turn.
- after a request that closes the connection (``Connection: close``,
  ``HTTP/1.0``), nothing more is read.

The channel keeps Twisted's ``HTTPChannel._handlingRequest`` true while a
request is handled, as Twisted's parser does, because Twisted's
``pauseProducing``/``resumeProducing``/``requestDone`` read it, and it
stops reading through ``HTTPChannel._networkProducer``, which
``requestDone`` resumes. Those private attributes are checked at import
(`LLHTTP`); without them, or without httptools, sites use Twisted's parser
and nothing else changes.
``tests/test_llhttp.py`` and the conformance and hostile suites run both
ways.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.iweb import INonQueuedRequestFactory

from ._channel import OxianChannel
from ._connection import MAX_HEAD
from ._headers import add_fields
from ._request import OxianRequest

try:
    import httptools
except ImportError:  # pragma: no cover - httptools is a dependency
    httptools = None  # type: ignore[assignment]

__all__ = ("HELD_LIMIT", "LLHTTP", "MAX_QUEUED", "LlhttpChannel")

#: Bytes a connection reads ahead while a request is handled before it
#: stops reading (Twisted's ``HTTPChannel`` holds as much).
HELD_LIMIT = 16384

#: Requests parsed ahead from one read that wait for the one handled.
MAX_QUEUED = 32


def _twisted_channel_state() -> bool:
    """
    Whether ``HTTPChannel`` keeps ``_handlingRequest``, ``_networkProducer``,
    ``_waitingForTransport`` and ``_savedTimeOut`` as used here (the first
    two read and set by the reader, all four by `LlhttpChannel.requestDone`,
    which is Twisted's without its line-mode step).
    """
    try:
        probe = HTTPChannel()
    except Exception:
        return False
    methods = (
        HTTPChannel.pauseProducing,
        HTTPChannel.resumeProducing,
        HTTPChannel.requestDone,
    )
    done = HTTPChannel.requestDone.__code__.co_names
    return (
        probe.__dict__.get("_handlingRequest") is False
        and getattr(probe, "_waitingForTransport", None) is False
        and getattr(probe, "_savedTimeOut", False) is None
        and all("_handlingRequest" in m.__code__.co_names for m in methods)
        and "_networkProducer" in HTTPChannel.connectionMade.__code__.co_names
        and {"_networkProducer", "_waitingForTransport", "_savedTimeOut"} <= set(done)
    )


#: Whether sites parse HTTP/1.1 with `LlhttpChannel`.
LLHTTP: bool = httptools is not None and _twisted_channel_state()

#: Space and tab, as the ints ``value[-1]`` gives.
_BLANKS = (32, 9)

_VERSIONS = {"1.1": b"HTTP/1.1", "1.0": b"HTTP/1.0"}


class _Refused(Exception):
    """A callback refuses the request being parsed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Message:
    """A request parsed while another is handled: it waits its turn."""

    __slots__ = (
        "method",
        "url",
        "version",
        "fields",
        "length",
        "expect",
        "body",
        "complete",
        "closes",
        "connection",
    )

    def __init__(self) -> None:
        self.method = b""
        self.url = b""
        self.version = b""
        self.fields: list[tuple[bytes, bytes]] = []
        self.length: int | None = 0
        self.expect = False
        self.body: list[bytes] = []
        self.complete = False
        self.closes = False
        self.connection: bytes | None = None


class _Reader:
    """
    The read side of one `LlhttpChannel`: its llhttp parser (whose
    callbacks are this object's ``on_*`` methods), the request being
    parsed, and what waits for the request being handled. A connection
    handling a request with nothing else to read (an open stream, say)
    drops its reader, and gets a new one when bytes come: a parser with its
    bound callbacks is ~0.9 KiB an idle stream need not keep.
    """

    __slots__ = (
        "channel",
        "parser",
        "done",
        "feeding",
        "resuming",
        "between",
        "begun",
        "url",
        "fields",
        "length",
        "chunked",
        "expect",
        "connection_header",
        "head_bytes",
        "in_head",
        "live",
        "message",
        "method",
        "version",
        "held",
        "held_bytes",
        "queue",
    )

    def __init__(self, channel: LlhttpChannel) -> None:
        self.channel = channel
        parser = httptools.HttpRequestParser(self)
        self.parser: Any = parser
        # Whether bytes after a request are read is this channel's rule
        # (Twisted's: `on_message_complete`), not llhttp's own reading of
        # ``Connection``.
        parser.set_dangerous_leniencies(lenient_data_after_close=True)
        #: Nothing more is parsed (after a closing request, or an error).
        self.done = False
        self.feeding = self.resuming = False
        #: The parser is between requests; requests begun in this feed.
        self.between = True
        self.begun = 0
        # The request being parsed.
        self.url = b""
        self.fields: list[tuple[bytes, bytes]] = []
        self.length: int | None = 0
        self.chunked = self.expect = self.in_head = False
        self.connection_header: bytes | None = None
        self.head_bytes = 0
        #: Where its body goes: the request built from its head...
        self.live: Any = None
        #: ...or, when it waits its turn, its `_Message`.
        self.message: _Message | None = None
        self.method = self.version = b""
        #: Bytes read while a request is handled.
        self.held: list[bytes] | None = None
        self.held_bytes = 0
        #: Parsed requests (or a refusal) waiting for the one handled.
        self.queue: deque[_Message | _Refused] | None = None

    def idle(self) -> bool:
        """Nothing begun, held or waiting: the reader may be dropped."""
        return self.between and not self.done and not self.queue and not self.held

    def close(self) -> None:
        """Read nothing more; let go of the parser (and its cycle)."""
        self.done = True
        self.parser = None
        self.queue = self.held = None
        self.live = self.message = None

    # Reading.

    def received(self, data: bytes) -> None:
        if self.done:
            return
        if self.channel._handlingRequest:
            self.hold(data)
            return
        self.feed(data)
        if self.queue:
            self.resume()

    def hold(self, data: bytes) -> None:
        held = self.held
        if held is None:
            held = self.held = []
        held.append(data)
        self.held_bytes += len(data)
        if self.held_bytes > HELD_LIMIT:
            # As Twisted's parser does; ``requestDone`` reads on.
            self.channel.pause_reading()

    def feed(self, data: bytes) -> None:
        self.feeding = True
        try:
            while True:
                self.begun = 0
                at_boundary = self.between
                try:
                    self.parser.feed_data(data)
                except httptools.HttpParserUpgrade as upgrade:
                    # ``Upgrade`` and ``CONNECT`` are not served: the request
                    # was an ordinary one, and what follows is the next.
                    data = data[upgrade.args[0] :]
                    if data and not self.done:
                        continue
                except httptools.HttpParserError as error:
                    if (
                        isinstance(error, httptools.HttpParserInvalidMethodError)
                        and at_boundary
                        and self.begun == 1
                        and not self.done
                    ):
                        self.channel.hand_over(data)
                    else:
                        self.failed(error)
                break
        finally:
            self.feeding = False

    def failed(self, error: Exception) -> None:
        """The parser stopped on ``error``: answer it in its turn."""
        if self.done:
            # Bytes after a request that closes the connection: ignored.
            return
        self.done = True
        refusal = error.__context__
        if not isinstance(refusal, _Refused):
            if isinstance(error, httptools.HttpParserInvalidMethodError):
                refusal = _Refused(501, "Method not implemented")
            else:
                refusal = _Refused(400, "Malformed request")
        if self.channel._handlingRequest or self.queue:
            self._waiting().append(refusal)
        else:
            self.channel.answer_bad_request(refusal.status, refusal.message)

    def _waiting(self) -> deque[_Message | _Refused]:
        queue = self.queue
        if queue is None:
            queue = self.queue = deque()
        return queue

    # The parser's callbacks (httptools' names).

    def on_message_begin(self) -> None:
        if self.done:
            # After a request that closes the connection: stop here.
            raise _Refused(400, "Request after the connection's last")
        self.between = False
        self.begun += 1
        self.url = b""
        self.fields = []
        self.length = 0
        self.chunked = self.expect = False
        self.connection_header = None
        self.head_bytes = 0
        self.in_head = True
        if self.channel._handlingRequest or self.queue:
            queue = self._waiting()
            if len(queue) >= MAX_QUEUED:
                # Answer what is queued, then close (the rest is retried).
                queue[-1].closes = True  # type: ignore[union-attr]
                raise _Refused(400, "Too many pipelined requests")
            message = self.message = _Message()
            queue.append(message)
        else:
            self.message = None

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_bytes += len(url)
        if self.head_bytes > MAX_HEAD:
            raise _Refused(414, "Request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:
            return  # a trailer field: dropped
        fields = self.fields
        if len(fields) >= self.channel.maxHeaders:
            raise _Refused(400, "Too many header fields")
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > MAX_HEAD:
            raise _Refused(431, "Request header fields too large")
        if value and value[-1] in _BLANKS:
            value = value.rstrip(b" \t")
        size = len(name)
        if size == 14 and name.lower() == b"content-length":
            self.length = int(value)
        elif size == 17 and name.lower() == b"transfer-encoding":
            if self.chunked or value.lower() != b"chunked":
                raise _Refused(400, "Unsupported transfer encoding")
            self.chunked = True
            self.length = None
        elif size == 10 and name.lower() == b"connection":
            self.connection_header = value
        elif size == 6 and name.lower() == b"expect":
            self.expect = True
        fields.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        parser = self.parser
        version = _VERSIONS.get(parser.get_http_version())
        if version is None:
            raise _Refused(400, "Malformed request")
        method = parser.get_method()
        self.method, self.version = method, version
        message = self.message
        if message is not None:
            message.method, message.url, message.version = method, self.url, version
            message.fields, message.length = self.fields, self.length
            message.expect = self.expect
            message.connection = self.connection_header
            return
        channel = self.channel
        request = self.live = channel.begin(
            version, self.fields, self.length, self.connection_header
        )
        if self.expect and self.length != 0:
            channel.invite_body(request, version)

    def on_body(self, body: bytes) -> None:
        request = self.live
        if request is not None:
            request.handleContentChunk(body)
        elif self.message is not None:
            self.message.body.append(body)

    def on_message_complete(self) -> None:
        self.between = True
        connection = self.connection_header
        if self.version != b"HTTP/1.1" or (
            connection is not None and b"close" in connection.lower().split(b" ")
        ):
            # Nothing after a request that closes the connection is read.
            self.done = True
        message = self.message
        if message is not None:
            message.complete = True
            self.message = None
            return
        request, self.live = self.live, None
        if request is None:
            return
        self.channel._handlingRequest = True
        request.requestReceived(self.method, self.url, self.version)

    # Waiting requests.

    def resume(self) -> None:
        """
        Nothing is handled: start the next queued request, or parse the
        bytes held meanwhile, until a request is being handled again.
        """
        channel = self.channel
        self.resuming = True
        try:
            while not channel._handlingRequest and channel.persistent:
                queue = self.queue
                if queue:
                    waiting = queue.popleft()
                    if isinstance(waiting, _Refused):
                        channel.answer_bad_request(waiting.status, waiting.message)
                        return
                    self.start(waiting)
                    continue
                if self.held and not self.done:
                    data = b"".join(self.held)
                    self.held, self.held_bytes = None, 0
                    self.feed(data)
                    continue
                break
        finally:
            self.resuming = False

    def start(self, message: _Message) -> None:
        """Handle a queued request (or go on reading its body live)."""
        version = message.version
        if not version:
            # Its head is still being read: it is read as any other.
            self.message = None
            return
        channel = self.channel
        request = channel.begin(
            version, message.fields, message.length, message.connection
        )
        if message.closes:
            channel.persistent = False
            request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
        for chunk in message.body:
            request.handleContentChunk(chunk)
        message.body = []
        if not message.complete:
            # The rest of its body is still to come: straight to it.
            self.method, self.version = message.method, version
            self.live = request
            self.message = None
            if message.expect:
                channel.invite_body(request, version)
            return
        channel._handlingRequest = True
        request.requestReceived(message.method, message.url, version)


class LlhttpChannel(OxianChannel):
    """An `OxianChannel` parsing with llhttp (see the module docstring)."""

    #: The read side (`_Reader`), made when bytes come.
    _reader: _Reader | None = None
    #: Twisted's parser reads the connection (`hand_over`).
    _twisted = False
    #: Reading the connection was paused (`pause_reading`, or the
    #: transport's full buffer while no request was handled): the request
    #: handled now resumes it when done. Twisted's ``requestDone`` resumes
    #: it after every request: four calls down to the reactor each time.
    _reading_paused = False

    def pause_reading(self) -> None:
        """Read nothing more until the request handled now is done."""
        self._reading_paused = True
        self._networkProducer.pauseProducing()

    def pauseProducing(self) -> None:
        if not self._handlingRequest:
            # ``HTTPChannel.pauseProducing`` stops reading then.
            self._reading_paused = True
        super().pauseProducing()  # type: ignore[no-untyped-call]

    def resumeProducing(self) -> None:
        if not self._handlingRequest:
            # ``HTTPChannel.resumeProducing`` reads on then.
            self._reading_paused = False
        super().resumeProducing()  # type: ignore[no-untyped-call]

    def dataReceived(self, data: bytes) -> None:
        if self._twisted:
            HTTPChannel.dataReceived(self, data)
            return
        reader = self._reader
        if reader is None:
            reader = self._reader = _Reader(self)
        reader.received(data)
        self._settle(reader)

    def _settle(self, reader: _Reader) -> None:
        """Drop the reader of a connection busy with nothing else to read."""
        if self._handlingRequest and self._reader is reader and reader.idle():
            self._reader = None
            reader.parser = None

    def hand_over(self, data: bytes) -> None:
        """
        A method llhttp does not know (any token is one, and a route may
        export it) begins ``data``: Twisted's parser reads the connection
        from here on.
        """
        self._twisted = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        HTTPChannel.dataReceived(self, data)

    def begin(
        self,
        version: bytes,
        fields: list[tuple[bytes, bytes]],
        length: int | None,
        connection: bytes | None,
    ) -> Any:
        """
        The request of a parsed head, as ``HTTPChannel`` builds it;
        ``connection``: its ``Connection`` field (``None``: none).
        """
        factory: Any = self.requestFactory
        if factory is OxianRequest or INonQueuedRequestFactory.providedBy(factory):
            request = factory(self)
        else:
            request = factory(self, len(self.requests))
        self.requests.append(request)
        add_fields(request.requestHeaders, fields)
        request.parseCookies()
        if connection is None:
            # What ``checkPersistence`` answers without the field.
            self.persistent = version == b"HTTP/1.1"
        else:
            self.persistent = self.checkPersistence(request, version)  # type: ignore[no-untyped-call]
        request.gotLength(length)
        return request

    def invite_body(self, request: Any, version: bytes) -> None:
        """
        ``Expect: 100-continue`` on an HTTP/1.1 request whose body is to
        come: invite it (unless ``gotLength`` refused it and dropped the
        field), as ``HTTPChannel.allHeadersReceived`` does.
        """
        expect = request.requestHeaders.getRawHeaders(b"expect")
        if version == b"HTTP/1.1" and expect and expect[0].lower() == b"100-continue":
            self.flush_pending()
            transport: Any = self.transport
            transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def requestDone(self, request: Any) -> None:
        if self._twisted:
            super().requestDone(request)  # type: ignore[no-untyped-call]
            return
        # ``HTTPChannel.requestDone`` without its line-mode step: what it
        # buffered for its own parser is nothing here (the reader holds it).
        if request is not self.requests[0]:
            raise TypeError
        del self.requests[0]
        if self._reading_paused and not self._waitingForTransport:
            self._reading_paused = False
            self._networkProducer.resumeProducing()
        if not self.persistent:
            self.loseConnection()
            return
        self._handlingRequest = False
        if self._savedTimeOut:
            self.setTimeout(self._savedTimeOut)  # type: ignore[no-untyped-call]
        reader = self._reader
        if reader is not None and not reader.feeding and not reader.resuming:
            reader.resume()
            self._settle(reader)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        super().connectionLost(reason)
