"""
Rate limits end to end (SPEC §16): a real ``twistd -n oxian
--rate-requests 1`` flooded from 10,000 distinct source addresses in
127.0.0.0/8 (each socket bound to its own address): every address's
request past its burst is ``429`` JSON with ``Retry-After``, a
well-behaved client at another address is never refused, and the server's
memory grows by a bounded amount (its limiter forgets the least recently
seen addresses past its bound).
"""

from __future__ import annotations

import json
import socket
import time

from twisted.trial.unittest import SynchronousTestCase

from .helpers import TwistdProcess, make_tree, rss_bytes

ROUTES = {
    "hello.py": """
        def GET(data, ctx):
            return "hello"
    """,
}
ADDRESSES = 10_000


def get(port: int, source: str) -> tuple[int, dict[str, str], bytes]:
    """One ``GET /hello`` from ``source``; status, headers, body."""
    with socket.socket() as sock:
        sock.settimeout(10)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


class FloodTests(SynchronousTestCase):
    def test_flood_of_addresses(self) -> None:
        root = make_tree(self.mktemp(), ROUTES)
        server = TwistdProcess(
            "--routes", root, "--rate-requests", "1", "--access-log", "off"
        )
        self.addCleanup(server.stop)
        port = server.port
        self.assertEqual(get(port, "127.255.255.1")[0], 200)
        before = rss_bytes(server.process.pid)
        good: list[int] = []
        refused = 0
        last_good = time.monotonic()
        for n in range(ADDRESSES):
            source = f"127.{1 + n // 62500}.{n // 250 % 250}.{1 + n % 250}"
            self.assertEqual(get(port, source)[0], 200, source)
            if n % 100 == 0:
                status, headers, body = get(port, source)
                self.assertEqual(status, 429)
                self.assertEqual(headers.get("retry-after"), "1")
                self.assertEqual(json.loads(body)["error"]["code"], "rate_limited")
                refused += 1
            if time.monotonic() - last_good > 1.1:
                good.append(get(port, "127.255.255.1")[0])
                last_good = time.monotonic()
        grown = rss_bytes(server.process.pid) - before
        self.assertEqual(refused, ADDRESSES // 100)
        self.assertTrue(good)
        self.assertEqual(set(good), {200})
        # 10,000 entries of the limiter and the connections' garbage: a few
        # MiB, not a leak per address.
        self.assertLess(grown, 32 * 1024 * 1024, grown)
