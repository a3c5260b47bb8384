"""
HTTP/2 over real TLS (SPEC §12) against the real ``twistd -n oxian``: a
self-signed certificate made by the test, ALPN offering h2 then
http/1.1, and a raw ``h2`` client on a socket that controls its own
window: a huge window and no reading keeps the server's memory bounded;
a stream reset at ``--buffer-limit`` leaves the connection's other
streams going.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
from twisted.trial.unittest import SynchronousTestCase

from .helpers import (
    LISTENING,
    TwistdProcess,
    h2_get,
    make_tree,
    rss_bytes,
    skip_unless,
    tls_listener,
)
from .test_e2e_stream import GIB_CHUNKS
from .test_e2e_stream import ROUTES as STREAM_ROUTES

ROUTES = {
    **STREAM_ROUTES,
    "hello.py": """
        def GET(data, ctx):
            return "hello"
    """,
    "flood.py": """
        async def GET(data, ctx):
            stream = ctx.response.stream()
            for _ in range(64):
                stream.write(b"x" * 16384)  # not awaited
            await ctx.sleep(30)
    """,
}


def tls_socket(port: int, protocols: list[str]) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(protocols)
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


class SocketH2Client:
    """A blocking HTTP/2 client over TLS with a window of its choosing."""

    def __init__(self, port: int, window: int | None = None, wide: int = 0) -> None:
        self.sock = tls_socket(port, ["h2", "http/1.1"])
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.h2.initiate_connection()
        if window is not None:
            self.h2.update_settings(
                {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
            )
        if wide:
            self.h2.increment_flow_control_window(wide)
        self.sock.sendall(self.h2.data_to_send())
        self.bodies: dict[int, bytearray] = {}
        self.events: list[Any] = []

    def request(self, path: str) -> int:
        stream_id = h2_get(self.h2, path, "https")
        self.bodies[stream_id] = bytearray()
        self.sock.sendall(self.h2.data_to_send())
        return stream_id

    def read_until(self, done: Any, acknowledge: frozenset[int] = frozenset()) -> None:
        """Handle frames until ``done()``, reopening the windows of ``acknowledge``."""
        while not done():
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            for event in self.h2.receive_data(data):
                self.events.append(event)
                if isinstance(event, h2.events.DataReceived):
                    self.bodies[event.stream_id] += event.data
                    if event.stream_id in acknowledge:
                        self.h2.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
            out = self.h2.data_to_send()
            if out:
                self.sock.sendall(out)

    def has(self, kind: type, stream_id: int) -> bool:
        return any(
            isinstance(e, kind) and getattr(e, "stream_id", None) == stream_id
            for e in self.events
        )

    def close(self) -> None:
        self.sock.close()


class TlsH2Tests(SynchronousTestCase):
    def setUp(self) -> None:
        skip_unless(os.path.exists("/proc/self/status"), "needs Linux /proc for RSS")
        root = make_tree(self.mktemp(), ROUTES)
        self.server = TwistdProcess(
            "--routes",
            root,
            "--buffer-limit",
            "262144",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            **tls_listener(self.mktemp()),
        )
        self.addCleanup(self.server.stop)

    def test_alpn_prefers_h2_then_http11(self) -> None:
        """ALPN picks h2 when offered, in any order; http/1.1 alone still works."""
        for offered, chosen in (
            (["h2", "http/1.1"], "h2"),
            (["http/1.1", "h2"], "h2"),
            (["http/1.1"], "http/1.1"),
        ):
            sock = tls_socket(self.server.port, offered)
            self.assertEqual(sock.selected_alpn_protocol(), chosen, offered)
            sock.close()
        sock = tls_socket(self.server.port, ["http/1.1"])
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"), data)
        self.assertTrue(data.endswith(b"hello"))

    def test_huge_window_reading_nothing_is_bounded(self) -> None:
        """
        1 GiB of awaited 64 KiB writes to a client advertising a 2³¹−1
        window that reads nothing: the handler stops and the server's RSS
        grows by less than 16 MiB.
        """
        pid = self.server.process.pid
        port = self._plain_port()
        self._ask(port, "/progress")
        before = rss_bytes(pid)
        client = SocketH2Client(
            self.server.port, window=2**31 - 1, wide=2**31 - 1 - 65535
        )
        self.addCleanup(client.close)
        client.request(f"/big?chunks={GIB_CHUNKS}")
        stalled = self._ask(port, "/quiet?seconds=3")
        during = rss_bytes(pid)
        self.assertLess(stalled["chunks"], GIB_CHUNKS // 4)
        self.assertLess(during - before, 16 * 1024 * 1024)

    def test_buffer_limit_resets_one_stream(self) -> None:
        """Past ``--buffer-limit`` one stream is reset; its sibling completes."""
        client = SocketH2Client(self.server.port, wide=2**30)
        self.addCleanup(client.close)
        flood = client.request("/flood")
        client.read_until(lambda: client.has(h2.events.StreamReset, flood))
        hello = client.request("/hello")
        client.read_until(lambda: client.has(h2.events.StreamEnded, hello))
        self.assertEqual(bytes(client.bodies[hello]), b"hello")
        self.assertLess(len(client.bodies[flood]), 262144)

    def _plain_port(self) -> int:
        return self.server.port_of(LISTENING)

    def _ask(self, port: int, path: str) -> dict[str, Any]:
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        connection.close()
        self.assertEqual(response.status, 200, body)
        return json.loads(body)  # type: ignore[no-any-return]
