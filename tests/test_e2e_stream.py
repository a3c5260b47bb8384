"""
End-to-end streaming against the real ``twistd -n oxian`` on 127.0.0.1
(issue #3): a 1 GiB stream to a client that stalls for 3 s keeps the
server's memory flat and stops the handler, then arrives intact; a client
that leaves mid-stream stops the handler within a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time

from twisted.trial.unittest import SynchronousTestCase

from .helpers import TwistdProcess, make_tree, rss_bytes, skip_unless

CHUNK = 64 * 1024
GIB_CHUNKS = 1024 * 1024 * 1024 // CHUNK
BASE = bytes(range(256)) * (CHUNK // 256)

ROUTES = {
    "big.py": """
        import time

        PROGRESS = {"chunks": 0, "outcome": None, "cleanup": None}
        CLEANED = []
        BASE = bytes(range(256)) * 256

        async def GET(data, ctx):
            total = int(data["chunks"])
            PROGRESS.update(chunks=0, outcome=None, cleanup=None)
            stream = ctx.response.stream(
                headers={"Content-Type": "application/octet-stream"}
            )
            try:
                for i in range(total):
                    await stream.write(i.to_bytes(8, "big") + BASE[8:])
                    PROGRESS["chunks"] = i + 1
                PROGRESS["outcome"] = "finished"
            except BaseException as exc:
                PROGRESS["outcome"] = type(exc).__name__
                raise
            finally:
                PROGRESS["cleanup"] = time.time()
                while CLEANED:
                    CLEANED.pop().callback(None)
    """,
    "progress.py": """
        from .big import PROGRESS

        def GET(data, ctx):
            return PROGRESS
    """,
    "quiet.py": """
        from .big import PROGRESS

        async def GET(data, ctx):
            # Answers once the stream handler has made no progress for
            # ``seconds`` (server time); never, if it keeps going.
            seconds, step = float(data["seconds"]), 0.05
            last, idle = PROGRESS["chunks"], 0.0
            while idle < seconds:
                await ctx.sleep(step)
                if PROGRESS["chunks"] == last:
                    idle += step
                else:
                    last, idle = PROGRESS["chunks"], 0.0
            return PROGRESS
    """,
    "cleaned.py": """
        from twisted.internet.defer import Deferred

        from .big import CLEANED, PROGRESS

        async def GET(data, ctx):
            # Answers once the stream handler's cleanup has run.
            if PROGRESS["cleanup"] is None:
                done = Deferred()
                CLEANED.append(done)
                await done.addTimeout(10, ctx.clock)
            return PROGRESS
    """,
}


def chunk(i: int) -> bytes:
    return i.to_bytes(8, "big") + BASE[8:]


class StreamingClient:
    """A raw HTTP/1.1 client that reads a chunked body at its own pace."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode("ascii")
        )
        self.file = self.sock.makefile("rb")
        self.status = self.file.readline()
        self.headers = {}
        while True:
            line = self.file.readline().rstrip(b"\r\n")
            if not line:
                break
            name, _, value = line.partition(b":")
            self.headers[name.strip().lower()] = value.strip()

    def read_body(self, sink: hashlib._Hash) -> tuple[int, bool]:
        """Read the chunked body into ``sink``: ``(bytes, complete)``."""
        total = 0
        while True:
            size_line = self.file.readline()
            if not size_line:
                return total, False
            size = int(size_line.strip(), 16)
            if size == 0:
                self.file.readline()
                return total, True
            data = self.file.read(size)
            sink.update(data)
            total += len(data)
            self.file.read(2)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class BackpressureEndToEndTests(SynchronousTestCase):
    """Backpressure and disconnects over real sockets."""

    def setUp(self) -> None:
        skip_unless(os.path.exists("/proc/self/status"), "needs Linux /proc for RSS")
        root = make_tree(self.mktemp(), ROUTES)
        self.server = TwistdProcess("--routes", root)
        self.addCleanup(self.server.stop)

    def ask(self, path: str) -> dict[str, object]:
        status, _, body = self.server.request("GET", path)
        self.assertEqual(status, 200, body)
        return json.loads(body)

    def test_stalled_client(self) -> None:
        """
        1 GiB, every 64 KiB write awaited: while the client reads nothing
        (3 s of server time with no handler progress) the server's RSS grows
        by less than 16 MiB; then the whole body arrives with the right
        SHA-256.
        """
        pid = self.server.process.pid
        self.ask("/progress")
        before = rss_bytes(pid)
        client = StreamingClient(self.server.port, f"/big?chunks={GIB_CHUNKS}")
        self.addCleanup(client.close)
        self.assertIn(b" 200 ", client.status)
        stalled = self.ask("/quiet?seconds=3")
        during = rss_bytes(pid)
        self.assertLess(stalled["chunks"], GIB_CHUNKS // 4)
        self.assertLess(
            during - before,
            16 * 1024 * 1024,
            f"RSS grew from {before} to {during} bytes",
        )

        received = hashlib.sha256()
        length, complete = client.read_body(received)
        self.assertTrue(complete)
        self.assertEqual(length, GIB_CHUNKS * CHUNK)
        expected = hashlib.sha256()
        for i in range(GIB_CHUNKS):
            expected.update(chunk(i))
        self.assertEqual(received.hexdigest(), expected.hexdigest())
        self.assertEqual(self.ask("/progress")["outcome"], "finished")

    def test_disconnect_mid_stream(self) -> None:
        """A client that leaves mid-stream: the handler's cleanup runs in 1 s."""
        client = StreamingClient(self.server.port, f"/big?chunks={GIB_CHUNKS}")
        client.file.read(1024 * 1024)
        left = time.time()
        client.close()
        progress = self.ask("/cleaned")
        self.assertLess(progress["cleanup"] - left, 1.0)
        self.assertIn(progress["outcome"], ("StreamClosed", "CancelledError"))
        self.assertLess(progress["chunks"], GIB_CHUNKS)
        self.assertNotIn("Traceback", self.server.output())
