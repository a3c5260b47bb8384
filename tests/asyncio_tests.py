"""
Handlers on the asyncio reactor (SPEC §14), against the real app listening
on 127.0.0.1: asyncio and Deferreds awaited in any mix (handlers,
middleware, dependency factories), contextvars, ``httpx.AsyncClient``,
``asyncio.timeout``, a client leaving cancelling the coroutine wherever it
waits (its ``finally`` runs), and an async generator streamed to a client
that stopped reading.

Run apart, on the asyncio reactor (tox and ``.ci/run`` do):
``python -m twisted.trial --reactor asyncio tests.asyncio_tests``. The
module name does not start with ``test_`` so the main run (on the default
reactor) does not collect it.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase

from oxian_tw import OxianApp
from oxian_tw._coroutines import drive, running_loop

from .helpers import make_tree

ROUTES = {
    "plain.py": """
        def GET(data, ctx):
            return {"plain": True}
    """,
    "mixed/dependencies.py": """
        import asyncio

        async def dependencies(parent):
            # An asyncio future, set on the loop's next iteration.
            loop = asyncio.get_running_loop()
            ready = loop.create_future()
            loop.call_soon(ready.set_result, "asyncio")
            return {"made_with": await ready}
    """,
    "mixed/middleware.py": """
        import asyncio

        async def middleware(data, ctx):
            loop = asyncio.get_running_loop()
            ready = loop.create_future()
            loop.call_soon(ready.set_result, None)
            await ready
            await ctx.sleep(0)
            return {"context": {"through": "middleware"}}
    """,
    "mixed/index.py": """
        import asyncio
        import contextvars

        VAR = contextvars.ContextVar("var", default=None)

        async def GET(data, ctx):
            VAR.set(ctx.request_id)
            loop = asyncio.get_running_loop()
            # Each kind of wait, for no time: an asyncio task, the app
            # clock's Deferred, a timer of the loop.
            async def nothing():
                return None

            await asyncio.get_running_loop().create_task(nothing())
            await ctx.sleep(0)
            future = loop.create_future()
            loop.call_later(0, future.set_result, 7)
            seven = await future
            soon = [loop.create_future() for _ in range(2)]
            for future in soon:
                loop.call_soon(future.set_result, None)
            await asyncio.gather(*soon)
            return {
                "same_context": VAR.get() == ctx.request_id,
                "seven": seven,
                "task": asyncio.current_task() is not None,
                "dependency": ctx.dependencies.made_with,
                "through": ctx.through,
            }
    """,
    "fetch.py": """
        import httpx

        async def GET(data, ctx):
            async with httpx.AsyncClient() as client:
                got = await client.get(f"http://127.0.0.1:{data['port']}/plain")
            return {"fetched": got.json()}
    """,
    "timeout.py": """
        import asyncio

        async def GET(data, ctx):
            out = {}
            # A deadline already due: it passes while the await waits, on
            # the loop's next turn (no wall-clock wait).
            try:
                async with asyncio.timeout(0):
                    await asyncio.get_running_loop().create_future()
            except TimeoutError:
                out["asyncio"] = "timed out"
            try:
                async with asyncio.timeout(0):
                    await ctx.sleep(10)
            except TimeoutError:
                out["deferred"] = "timed out"
            return out
    """,
    "hang.py": """
        import asyncio

        async def GET(data, ctx):
            state = ctx.dependencies.state
            kind = data["kind"]
            state[kind] = "waiting"
            try:
                if kind == "asyncio":
                    # An asyncio future nobody resolves: only cancelling ends it.
                    await asyncio.get_running_loop().create_future()
                else:
                    await ctx.sleep(30)
            except BaseException as error:
                state[kind + "_raised"] = type(error).__name__
                raise
            finally:
                state[kind] = "finally ran"
    """,
    "tokens.py": """
        import asyncio

        async def GET(data, ctx):
            state = ctx.dependencies.state
            async def tokens():
                try:
                    n = 0
                    while True:
                        n += 1
                        state["pulled"] = n
                        ready = asyncio.get_running_loop().create_future()
                        asyncio.get_running_loop().call_soon(ready.set_result, None)
                        await ready
                        yield {"n": n, "pad": "x" * 16000}
                finally:
                    state["closed"] = True
            return tokens()
    """,
}


async def until(check: Any, timeout: float = 10.0) -> None:
    """Wait (on the reactor) until ``check()`` is true."""
    for _ in range(int(timeout / 0.01)):
        if check():
            return
        await deferLater(reactor, 0.01)
    raise AssertionError("timed out waiting")


class AsyncioHandlerTests(TestCase):
    def setUp(self) -> None:
        if running_loop() is None and not _on_asyncio():
            raise SkipTest("run with: trial --reactor asyncio tests.asyncio_tests")
        self.state: dict[str, Any] = {}
        root = make_tree(self.mktemp(), ROUTES)
        self.app = OxianApp(
            root,
            dependencies={"state": self.state},
            config={"access-log": "off"},
        )
        self.site = self.app.site()
        self.port = reactor.listenTCP(  # type: ignore[attr-defined]
            0, self.site, interface="127.0.0.1"
        )
        self.addCleanup(self.closed)
        self.addCleanup(self.port.stopListening)
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"

    async def closed(self) -> None:
        """Until the server has closed every connection (and its timers)."""
        await until(lambda: self.app.open_connections == 0)
        # Deadlines of connections that are gone are left to lapse: not here.
        self.site.phase_deadlines.stop()
        self.site.body_deadlines.stop()
        await deferLater(reactor, 0)

    def get(self, path: str, **headers: str) -> Deferred[Any]:
        """``GET path`` with httpx (asyncio, driven as a handler would be)."""
        import httpx

        async def fetch() -> Any:
            async with httpx.AsyncClient(timeout=10) as client:
                return await client.get(self.base + path, headers=headers)

        # (A test method starts before the reactor runs its loop: asyncio
        # code is driven from the reactor's first turn on.)
        return deferLater(reactor, 0, lambda: drive(fetch()))

    async def test_asyncio_and_deferreds_mixed(self) -> None:
        """Handler, middleware and dependencies await both kinds; contextvars hold."""
        response = await self.get("/mixed")
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(
            response.json(),
            {
                "same_context": True,
                "seven": 7,
                "task": True,
                "dependency": "asyncio",
                "through": "middleware",
            },
        )

    async def test_httpx_to_a_local_server(self) -> None:
        response = await self.get(f"/fetch?port={self.port.getHost().port}")
        self.assertEqual(response.json(), {"fetched": {"plain": True}})

    async def test_asyncio_timeout(self) -> None:
        """``asyncio.timeout`` cancels an asyncio await and a Deferred alike."""
        response = await self.get("/timeout")
        self.assertEqual(
            response.json(), {"asyncio": "timed out", "deferred": "timed out"}
        )

    async def test_client_leaving_cancels_the_coroutine(self) -> None:
        """
        The client leaves while the handler awaits asyncio or a Deferred:
        ``CancelledError`` at that await, ``finally`` runs.
        """
        for kind in ("asyncio", "deferred"):
            waiting, ended = (
                _state_is(self.state, kind, "waiting"),
                _state_is(self.state, kind, "finally ran"),
            )
            client = socket.create_connection(("127.0.0.1", self.port.getHost().port))
            client.sendall(
                f"GET /hang?kind={kind} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            )
            await until(waiting)
            client.close()
            await until(ended)
            self.assertEqual(self.state[kind + "_raised"], "CancelledError")
        self.assertEqual(self.app.in_flight, 0)

    async def test_generator_to_a_stalled_client(self) -> None:
        """
        An async generator streamed as SSE to a client that stopped reading
        is not advanced past what the socket and one high-water mark hold;
        the client leaving closes it.
        """
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", self.port.getHost().port))
        client.sendall(
            b"GET /tokens HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
        )
        client.setblocking(False)
        head = bytearray()

        def got_head() -> bool:
            try:
                head.extend(client.recv(4096))
            except BlockingIOError:
                pass
            return b"\r\n\r\n" in head

        # (Never a blocking call here: the server runs on this thread.)
        await until(got_head)
        self.assertIn(b"text/event-stream", bytes(head))
        await until(lambda: self.state.get("pulled", 0) > 10)
        # Stalled: the count stops moving.
        last = -1
        while self.state["pulled"] != last:
            last = self.state["pulled"]
            await deferLater(reactor, 0.3)
        queued = _unsent(self.app, client)
        pulled_bytes = self.state["pulled"] * 16000
        # What the generator made is in the kernel's buffers, or held by
        # the stream below its high-water mark (64 KiB), plus one event.
        self.assertLess(pulled_bytes, queued + 64 * 1024 + 2 * 16100, queued)
        self.assertLess(pulled_bytes, 8 * 1024 * 1024)
        client.close()
        await until(lambda: self.state.get("closed") is True)


def _state_is(state: dict[str, Any], key: str, value: str) -> Any:
    return lambda: state.get(key) == value


def _on_asyncio() -> bool:
    from twisted.internet import asyncioreactor

    return isinstance(reactor, asyncioreactor.AsyncioSelectorReactor)


def _unsent(app: OxianApp, client: socket.socket) -> int:
    """
    Bytes sent to ``client`` and not read: its receive queue, and what the
    server's transport and kernel hold.
    """
    import fcntl
    import struct
    import termios

    from oxian_tw._fastpath import unsent_bytes

    read = fcntl.ioctl(client, termios.FIONREAD, b"\0" * 4)
    (sse,) = list(app.streams)
    transport = sse._stream._request.channel.transport
    return int(struct.unpack("i", read)[0]) + unsent_bytes(transport)
