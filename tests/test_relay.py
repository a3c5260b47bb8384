"""
`BodyRelay` (``ctx.response.pipe(response)`` for an ``IResponse``), on its
own: each rule of backpressure both ways, with a stream whose writes the
test answers and an upstream transport that records what it was told.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseDone, ResponseFailed
from twisted.web.http import PotentialDataLoss

from oxian_tw import StreamClosed
from oxian_tw._relay import relay


class Upstream:
    """The response's transport: records pause, resume and stop."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")


class Response:
    """An ``IResponse`` that delivers to a protocol the test drives."""

    def __init__(self) -> None:
        self.upstream = Upstream()
        self.protocol: Any = None

    def deliverBody(self, protocol: Any) -> None:
        self.protocol = protocol
        protocol.makeConnection(self.upstream)


class Writes:
    """A stream whose writes wait until the test answers them."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.waiting: list[Deferred[bool]] = []
        self.at_once = True

    def write(self, data: bytes) -> Deferred[bool]:
        self.written.append(data)
        if self.at_once:
            return succeed(True)
        d: Deferred[bool] = Deferred()
        self.waiting.append(d)
        return d


class RelayTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.stream = Writes()
        self.response = Response()
        self.done = relay(self.stream, self.response)  # type: ignore[arg-type]
        self.protocol = self.response.protocol
        self.calls = self.response.upstream.calls

    def test_room_no_pause(self) -> None:
        self.protocol.dataReceived(b"a")
        self.protocol.dataReceived(b"b")
        self.assertEqual(self.stream.written, [b"a", b"b"])
        self.assertEqual(self.calls, [])
        self.protocol.connectionLost(Failure(ResponseDone()))
        self.assertIsNone(self.successResultOf(self.done))

    def test_full_window_pauses_the_upstream(self) -> None:
        self.stream.at_once = False
        self.protocol.dataReceived(b"a")
        self.assertEqual(self.calls, ["pause"])
        self.stream.waiting.pop().callback(True)
        self.assertEqual(self.calls, ["pause", "resume"])
        self.assertNoResult(self.done)

    def test_closed_stream_stops_the_upstream(self) -> None:
        self.stream.at_once = False
        self.protocol.dataReceived(b"a")
        self.stream.waiting.pop().callback(False)
        self.assertEqual(self.calls, ["pause", "stop"])
        self.assertIsNone(self.successResultOf(self.done))
        # The upstream's own end, after the stop, changes nothing.
        self.protocol.connectionLost(Failure(ResponseFailed([])))
        self.protocol.dataReceived(b"late")
        self.assertEqual(self.stream.written, [b"a"])

    def test_client_gone_while_waiting(self) -> None:
        self.stream.at_once = False
        self.protocol.dataReceived(b"a")
        self.stream.waiting.pop().errback(StreamClosed("gone"))
        self.assertEqual(self.calls, ["pause", "stop"])
        self.failureResultOf(self.done, StreamClosed)

    def test_cancelled(self) -> None:
        """The handler stopped (its client left): the upstream request goes."""
        self.done.cancel()
        self.assertEqual(self.calls, ["stop"])
        self.failureResultOf(self.done, CancelledError)

    def test_length_unknown_ends_well(self) -> None:
        self.protocol.connectionLost(Failure(PotentialDataLoss()))
        self.assertIsNone(self.successResultOf(self.done))

    def test_upstream_failure_fails(self) -> None:
        """A body cut short is an error, never a silently complete response."""
        self.protocol.connectionLost(Failure(ResponseFailed([])))
        self.failureResultOf(self.done, ResponseFailed)
