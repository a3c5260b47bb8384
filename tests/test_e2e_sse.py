"""
End-to-end SSE against the real ``twistd -n oxian`` on 127.0.0.1 (issue
#4): a broadcast to 200 reading clients and one frozen client, clients that
leave abruptly, and SIGTERM with 100 open streams.
"""

from __future__ import annotations

import json
import os
import signal
import time

from twisted.trial.unittest import SynchronousTestCase

from .helpers import TwistdProcess, make_tree, rss_bytes, skip_unless
from .sse_clients import SseClient, pump

EVENT_SIZE = 4096
EVENTS = 2000
BATCH = 25

ROUTES = {
    "feed.py": """
        class Client:
            def __init__(self, sse):
                self.sse = sse

        CLIENTS = set()

        def GET(data, ctx):
            # The seed's chat: a module-level set, cleaned up by done.
            client = Client(ctx.response.sse())
            CLIENTS.add(client)
            client.sse.done.addCallback(lambda _: CLIENTS.discard(client))
    """,
    "publish.py": """
        from .feed import CLIENTS

        def payload(i, size):
            head = f"{i:08d}:"
            return head + "abcdefghijklmnopqrstuvwxyz"[i % 26] * (size - len(head))

        def POST(data, ctx):
            first, count = int(data["first"]), int(data["count"])
            size = int(data["size"])
            for i in range(first, first + count):
                text = payload(i, size)
                for client in CLIENTS:
                    client.sse.send(text, id=str(i))
            return {"clients": len(CLIENTS), "streams": len(ctx.app.streams)}
    """,
    "settled.py": """
        from .feed import CLIENTS

        async def GET(data, ctx):
            # Answers once the set has ``clients`` entries (server time
            # waited, in seconds), or after ``timeout`` seconds.
            target, timeout = int(data["clients"]), float(data["timeout"])
            start = ctx.clock.seconds()
            while len(CLIENTS) != target and ctx.clock.seconds() - start < timeout:
                await ctx.sleep(0.01)
            return {
                "clients": len(CLIENTS),
                "streams": len(ctx.app.streams),
                "waited": ctx.clock.seconds() - start,
            }
    """,
}


def payload(i: int) -> str:
    head = f"{i:08d}:"
    return head + "abcdefghijklmnopqrstuvwxyz"[i % 26] * (EVENT_SIZE - len(head))


class SseEndToEndTests(SynchronousTestCase):
    """Real sockets, real ``twistd``."""

    def start(self, *args: str) -> TwistdProcess:
        skip_unless(os.path.exists("/proc/self/status"), "needs Linux /proc for RSS")
        root = make_tree(self.mktemp(), ROUTES)
        server = TwistdProcess("--routes", root, *args)
        self.addCleanup(server.stop)
        return server

    def ask(self, server: TwistdProcess, method: str, path: str) -> dict[str, object]:
        status, _, body = server.request(method, path)
        self.assertEqual(status, 200, body)
        return json.loads(body)

    def connect(
        self, server: TwistdProcess, count: int, already: int = 0
    ) -> list[SseClient]:
        clients = [SseClient(server.port, "/feed") for _ in range(count)]
        self.addCleanup(lambda: [c.close() for c in clients])
        pump(clients, lambda: all(c.status is not None for c in clients))
        self.assertEqual({c.status for c in clients}, {200})
        total = already + count
        settled = self.ask(server, "GET", f"/settled?clients={total}&timeout=10")
        self.assertEqual(settled["clients"], total)
        return clients

    def test_broadcast_with_frozen_client(self) -> None:
        """
        2,000 events of 4 KiB to 200 readers and one client that never
        reads: every reader that stays gets every event in order, readers
        that leave mid-way and the frozen one (disconnected by its budget)
        leave the set without upsetting the loop, and RSS stays bounded.
        """
        server = self.start()
        pid = server.process.pid
        self.ask(server, "GET", "/settled?clients=0&timeout=0")
        before = rss_bytes(pid)
        frozen = SseClient(server.port, "/feed", reading=False)
        self.addCleanup(frozen.close)
        readers = self.connect(server, 200, already=1)
        leaving, staying = readers[:20], readers[20:]
        peak = 0
        for first in range(0, EVENTS, BATCH):
            if first == EVENTS // 2:
                for client in leaving:
                    client.abort()
            result = self.ask(
                server,
                "POST",
                f"/publish?first={first}&count={BATCH}&size={EVENT_SIZE}",
            )
            last = str(first + BATCH - 1)
            pump(
                staying,
                lambda last=last: all(
                    c.events and c.events[-1].id == last for c in staying
                ),
            )
            peak = max(peak, rss_bytes(pid))
        self.assertEqual(result["clients"], result["streams"])
        for client in staying:
            self.assertEqual(len(client.events), EVENTS)
            for i, event in enumerate(client.events):
                if event.id != str(i) or event.data != payload(i):
                    self.fail(f"event {i} wrong: {event.id!r} {event.data[:20]!r}")
        for client in leaving:
            ids = [int(e.id) for e in client.events]
            self.assertEqual(ids, list(range(len(ids))))

        settled = self.ask(server, "GET", "/settled?clients=180&timeout=5")
        self.assertEqual((settled["clients"], settled["streams"]), (180, 180))
        # The frozen client was cut: what it got is a prefix, then the end.
        frozen.reading = True
        pump([frozen], lambda: frozen.eof)
        self.assertFalse(frozen.complete)
        self.assertLess(len(frozen.events), EVENTS)
        self.assertLess(frozen.received, 7 * 1024 * 1024)
        output = server.output()
        self.assertIn("byte budget; disconnected", output)
        self.assertNotIn("Traceback", output)
        grown = peak - before
        print(f"\nRSS before {before >> 20} MiB, peak {peak >> 20} MiB")
        self.assertLess(grown, 64 * 1024 * 1024, f"RSS grew by {grown} bytes")

    def test_abrupt_disconnects(self) -> None:
        """
        Clients that reset or close their connections leave the route's
        set (and the registry) within 2 s.
        """
        server = self.start("--ping", "1")
        clients = self.connect(server, 50)
        for i, client in enumerate(clients):
            client.abort() if i % 2 else client.close()
        settled = self.ask(server, "GET", "/settled?clients=0&timeout=5")
        self.assertEqual((settled["clients"], settled["streams"]), (0, 0))
        print(f"\nset empty after {settled['waited']:.3f} s of server time")
        self.assertLess(settled["waited"], 2.0)
        self.assertNotIn("Traceback", server.output())

    def test_sigterm(self) -> None:
        """
        SIGTERM with 100 open streams: each gets a ``retry`` of 1–5 s and
        a clean end, and twistd exits cleanly within the grace + 1 s.
        """
        server = self.start("--shutdown-grace", "5")
        clients = self.connect(server, 100)
        sent = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        pump(clients, lambda: all(c.eof for c in clients), timeout=10)
        code = server.process.wait(timeout=10)
        elapsed = time.monotonic() - sent
        self.assertIn(code, (0, -signal.SIGTERM))
        self.assertLess(elapsed, 5 + 1)
        for client in clients:
            self.assertTrue(client.complete)
            self.assertIsNotNone(client.decoder.retry)
            self.assertTrue(1000 <= client.decoder.retry <= 5000)
        self.assertGreater(len({c.decoder.retry for c in clients}), 10)
        output = server.output(to_the_end=True)
        self.assertIn("Server Shut Down", output)
        self.assertNotIn("Traceback", output)
