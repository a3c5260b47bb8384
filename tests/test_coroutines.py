"""
`oxian_tw._coroutines.drive` off asyncio (the default reactor): Deferreds
awaited and cancelled as ``Deferred.fromCoroutine`` does, contextvars kept,
and asyncio awaited without the asyncio reactor failing with an error that
names the fix. (On the asyncio reactor: ``tests/asyncio_tests.py``.)
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw._coroutines import AsyncioReactorRequired, drive, running_loop

from .helpers import RoutesTestCase

_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


class DriveTests(SynchronousTestCase):
    def test_no_loop_here(self) -> None:
        self.assertIsNone(running_loop())

    def test_deferreds(self) -> None:
        waited: Deferred[int] = Deferred()

        async def twice() -> int:
            return 2 * await waited

        result = drive(twice())
        self.assertNoResult(result)
        waited.callback(21)
        self.assertEqual(self.successResultOf(result), 42)

    def test_cancel(self) -> None:
        """Cancelled: ``CancelledError`` at the await, ``finally`` runs."""
        seen: list[str] = []

        async def waits() -> None:
            try:
                await Deferred()
            except CancelledError:
                seen.append("cancelled")
                raise
            finally:
                seen.append("finally")

        result = drive(waits())
        result.cancel()
        self.failureResultOf(result, CancelledError)
        self.assertEqual(seen, ["cancelled", "finally"])

    def test_contextvars(self) -> None:
        """A coroutine's context is its own and carries across its awaits."""
        waited: Deferred[None] = Deferred()

        async def sets() -> str:
            _VAR.set("inside")
            await waited
            return _VAR.get()

        result = drive(sets())
        waited.callback(None)
        self.assertEqual(self.successResultOf(result), "inside")
        self.assertEqual(_VAR.get(), "unset")

    def test_asyncio_names_the_fix(self) -> None:
        """
        An asyncio call (it asks for the running loop, as asyncio's timers
        and every asyncio library do) without the asyncio reactor: the fix,
        named.
        """

        async def waits() -> None:
            await asyncio.get_running_loop().create_future()

        failure = self.failureResultOf(drive(waits()), AsyncioReactorRequired)
        self.assertIn("twistd -r asyncio", str(failure.value))
        self.assertIn("no running event loop", str(failure.value.__cause__))

    def test_asyncio_future_names_the_fix(self) -> None:
        """Awaiting an asyncio future of a loop that does not run: the same."""
        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)

        async def awaits() -> Any:
            return await loop.create_future()

        self.failureResultOf(drive(awaits()), AsyncioReactorRequired)


class HandlerTests(RoutesTestCase):
    routes = {
        "sleepy.py": """
            import asyncio

            async def GET(data, ctx):
                # What asyncio's timers and libraries ask first.
                await asyncio.get_running_loop().create_future()
                return "slept"
        """,
    }

    def test_handler_awaiting_asyncio(self) -> None:
        """A 500 for the client; the log says how to run asyncio."""
        response = self.get("/sleepy")
        self.assertEqual(response.code, 500)
        self.assertNotIn("twistd", response.text())
        self.assertIn("twistd -r asyncio", self.log_text())
        self.flushLoggedErrors(AsyncioReactorRequired)
