# -*- test-case-name: tests.test_relay -*-
"""
Relaying an HTTP response body (``twisted.web.iweb.IResponse``, what treq
and ``Agent`` return) into a `Stream`, with backpressure both ways: while
the client's window is full the upstream connection is paused (its TCP
window fills in turn), and when the client leaves the upstream request is
dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss

from ._errors import StreamClosed

if TYPE_CHECKING:
    from ._producer import Stream


_DONE = Failure(ResponseDone())


class BodyRelay(Protocol):
    """
    The protocol an ``IResponse`` delivers its body to (`relay` starts it):
    each chunk written to the stream; the upstream paused while a write
    waits, resumed when it is accepted, stopped when the stream refuses it
    or the relay is cancelled.

    :ivar deferred: fires ``None`` when the whole body was relayed (or the
        stream closed first), fails with the upstream's error (a body cut
        short) or `StreamClosed` (the client left while a write waited).
    """

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._paused = False
        self._stopped = False
        self.deferred: Deferred[None] = Deferred(self._cancel)

    def dataReceived(self, data: bytes) -> None:
        if self._stopped:
            return
        written = self._stream.write(data)
        waiting = not written.called
        written.addCallbacks(self._accepted, self._refused)
        if waiting and not self._stopped:
            # The client's window is full: so will the upstream's be.
            self._paused = True
            self._upstream().pauseProducing()

    def connectionLost(self, reason: Failure = _DONE) -> None:
        if self._stopped:
            return
        self._stopped = True
        if reason.check(ResponseDone, PotentialDataLoss):
            self.deferred.callback(None)
        else:
            self.deferred.errback(reason)

    def _accepted(self, ok: bool) -> None:
        if not ok:
            # The stream is closed: nobody reads what is still to come.
            self._stop(None)
        elif self._paused and not self._stopped:
            self._paused = False
            self._upstream().resumeProducing()

    def _refused(self, failure: Failure) -> None:
        failure.trap(StreamClosed)
        self._stop(failure)

    def _cancel(self, _: Deferred[None]) -> None:
        # The handler was stopped (its client left): drop the upstream.
        if not self._stopped:
            self._stopped = True
            self._upstream().stopProducing()
            self.deferred.errback(CancelledError())

    def _stop(self, failure: Failure | None) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._upstream().stopProducing()
        if failure is None:
            self.deferred.callback(None)
        else:
            self.deferred.errback(failure)

    def _upstream(self) -> Any:
        # The response's transport: Agent's producer proxy for the
        # connection (pause, resume and stop reach the TCP transport).
        return self.transport


def relay(stream: Stream, response: Any) -> Deferred[None]:
    """Relay ``response``'s body (an ``IResponse``) into ``stream``."""
    protocol = BodyRelay(stream)
    response.deliverBody(protocol)
    return protocol.deferred
