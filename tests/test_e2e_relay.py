"""
``ctx.response.pipe(response)`` with a treq response, end to end (issue 18):
one real ``twistd -n oxian`` whose ``/relay`` fetches its own ``/big`` (1 GiB
in awaited 64 KiB writes) with treq and pipes it to a client. A client that
reads nothing holds the upstream: ``/big`` stops writing after a few MiB
(the windows of both connections fill) and goes on when the client reads;
a client that leaves makes the relay drop the upstream request, which
``/big`` sees as its client leaving.
"""

from __future__ import annotations

import json
import socket

from twisted.trial.unittest import SynchronousTestCase

from .helpers import TwistdProcess, assert_clean_exit, make_tree

ROUTES = {
    "big.py": """
        from oxian_tw import StreamClosed

        STATE = {"written": 0, "ended": None}
        CHUNK = b"x" * 65536

        async def GET(data, ctx):
            STATE["written"], STATE["ended"] = 0, None
            ctx.response.headers({"Content-Type": "application/octet-stream"})
            try:
                for _ in range(16384):  # 1 GiB
                    if not await ctx.response.stream(CHUNK):
                        break
                    STATE["written"] += len(CHUNK)
                STATE["ended"] = "complete"
            except StreamClosed:
                STATE["ended"] = "client_gone"
            except BaseException as e:
                STATE["ended"] = type(e).__name__
                raise
    """,
    "progress.py": """
        from .big import STATE

        async def GET(data, ctx):
            # ?settled: once /big has written something and then nothing
            # more for a second; ?ended: once /big has ended. The waiting is
            # the server's, on its own clock (at most 20 s).
            waited, last = 0.0, -1
            while waited < 20:
                if "ended" in data and STATE["ended"] is not None:
                    break
                if "settled" in data and STATE["written"] == last > 0:
                    break
                if "settled" not in data and "ended" not in data:
                    break
                last = STATE["written"]
                step = 1.0 if "settled" in data else 0.05
                await ctx.sleep(step)
                waited += step
            return STATE
    """,
    "relay.py": """
        import treq

        async def GET(data, ctx):
            here = ctx.request.raw.getHost()
            upstream = await treq.get(
                f"http://127.0.0.1:{here.port}/big", unbuffered=True, reactor=ctx.clock
            )
            ctx.response.headers({"Content-Type": "application/octet-stream"})
            await ctx.response.pipe(upstream)
    """,
}
MIB = 1024 * 1024


class RelayTests(SynchronousTestCase):
    def setUp(self) -> None:
        root = make_tree(self.mktemp(), ROUTES)
        self.server = TwistdProcess("--routes", root, "--access-log", "off")
        self.addCleanup(self.server.stop)

    def progress(self, wait: str = "") -> dict[str, object]:
        _, _, body = self.server.request("GET", f"/progress?{wait}")
        result: dict[str, object] = json.loads(body)
        return result

    def settled(self) -> int:
        """Bytes ``/big`` has written once that stops growing for 1 s."""
        written = int(self.progress("settled")["written"])  # type: ignore[call-overload]
        self.assertGreater(written, 0, "/big never wrote")
        return written

    def test_stalled_then_reading_then_gone(self) -> None:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        client.connect(("127.0.0.1", self.server.port))
        client.sendall(b"GET /relay HTTP/1.1\r\nHost: x\r\n\r\n")
        # Reads nothing: the upstream is held after a few MiB.
        held = self.settled()
        self.assertLess(held, 64 * MIB)
        self.assertIsNone(self.progress()["ended"])

        # Reading lets it go on.
        client.settimeout(10)
        read = 0
        while read < 16 * MIB:
            data = client.recv(1024 * 1024)
            self.assertTrue(data)
            read += len(data)
        self.assertGreater(self.settled(), held + 8 * MIB)

        # Leaving drops the upstream request.
        client.close()
        self.assertEqual(self.progress("ended")["ended"], "client_gone")
        self.assertLess(int(self.progress()["written"]), 1024 * MIB)  # type: ignore[call-overload]
        assert_clean_exit(self, self.server)
