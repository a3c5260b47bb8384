"""
Helpers for the hub's tests against a real ``redis-server``: a stand-in
for an SSE stream that decodes what the hub delivers, a wait on the real
reactor, and a test case with a Redis of its own.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from oxian_tw.hub import Hub, ISubscriber, RedisHub
from oxian_tw.hub._address import parse_redis_url
from oxian_tw.hub._core import SubState
from oxian_tw.sse import Decoder, Event

from .helpers import RedisServer


@implementer(ISubscriber)
class Collector:
    """Stands in for an SSE stream (`ISubscriber`): decodes what it is given."""

    closed = False
    request_id = "test"
    lags = True

    def __init__(self) -> None:
        self._decoder = Decoder()
        self._ends: list[Any] = []
        self.events: list[Event] = []
        #: Every payload as it came (to check the wire).
        self.wires: list[bytes] = []

    def _offer(self, wire: bytes) -> bool:
        self.wires.append(wire)
        self.events.extend(e for e in self._decoder.feed(wire) if isinstance(e, Event))
        return True

    _deliver = _offer

    def _when_drained(self, callback: Any) -> None:
        reactor.callLater(0, callback)  # type: ignore[attr-defined]

    def _cut(self, reason: str = "shutdown") -> None:
        self.end()

    def _on_end(self, callback: Any) -> None:
        self._ends.append(callback)

    def end(self) -> None:
        self.closed = True
        for callback in self._ends:
            callback(self)

    def ids(self) -> list[str | None]:
        return [e.id for e in self.events]

    def data(self) -> list[Any]:
        """Each event's data: JSON decoded, else as sent."""
        return [_decoded(e.data) for e in self.events]


def _decoded(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data


def place(event_id: str) -> tuple[str, int]:
    """A one-channel id's (epoch, n)."""
    epoch, n = event_id.split("-")
    return epoch, int(n)


async def until(condition: Any, timeout: float = 10.0) -> None:
    """Let the reactor run until ``condition()`` holds."""
    waited = 0.0
    while not condition():
        if waited >= timeout:
            raise AssertionError(f"still waiting after {timeout} s")
        await deferLater(reactor, 0.01)
        waited += 0.01


def live(hub: Hub, stream: Collector) -> bool:
    """Whether ``stream`` is caught up and in its group."""
    sub = hub._subs.get(stream)  # type: ignore[call-overload]
    return sub is not None and sub.state is SubState.LIVE


class RedisHubTestCase(TestCase):
    """A test with a ``redis-server`` of its own; hubs stand for processes."""

    db = 3

    def setUp(self) -> None:
        self.redis = RedisServer(self.mktemp())
        self.addCleanup(self.redis.stop)

    def hub(self, **options: Any) -> RedisHub:
        hub = RedisHub(
            parse_redis_url(self.redis.url(self.db)), lambda: reactor, **options
        )
        self.addCleanup(hub.stop)
        return hub

    def cli(self, *args: str) -> str:
        """A command through ``redis-cli``, as an operator would run it."""
        return subprocess.run(
            ["redis-cli", "-p", str(self.redis.port), "-n", str(self.db), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout

    async def subscribed(
        self, hub: Hub, *channels: str, last: str | None = None, **kw: Any
    ) -> Collector:
        """A stream subscribed to ``channels``, once caught up."""
        stream = Collector()
        hub.subscribe(stream, channels, last, **kw)  # type: ignore[arg-type]
        await until(lambda: live(hub, stream))
        return stream
