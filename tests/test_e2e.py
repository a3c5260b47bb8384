"""
End-to-end tests: the real ``twistd -n oxian`` on an ephemeral 127.0.0.1
port, over real sockets, stopped with SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import socket

from twisted.trial.unittest import SynchronousTestCase

from .helpers import TwistdProcess, assert_clean_exit, make_tree

EXAMPLES = os.path.join(
    os.path.dirname(os.path.dirname(__file__)), "examples", "routes"
)

ROUTES = {
    "index.py": """
        def GET(data, ctx):
            return {"ok": True}
    """,
    "items/[id].py": """
        def GET(data, ctx):
            return {"id": data["id"]}

        def POST(data, ctx):
            return {"id": data["id"], "body": ctx.request.body}
    """,
    "timer.py": """
        def GET(data, ctx):
            def explode():
                raise RuntimeError("timer exploded")
            ctx.clock.callLater(0, explode)
            return "scheduled"
    """,
    "crash.py": """
        def GET(data, ctx):
            raise RuntimeError("handler exploded")
    """,
    "slow.py": """
        from twisted.logger import Logger

        log = Logger()

        async def GET(data, ctx):
            log.info("slow request started")
            await ctx.sleep(1.5)
            return "x" * 200000
    """,
    "events.py": """
        def GET(data, ctx):
            ctx.response.sse().send("hello")
    """,
}


def read_response(sock: socket.socket) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """Read one HTTP/1.1 response with a ``Content-Length`` from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b": ")
        headers[name.lower()] = value
    length = int(headers.get(b"content-length", b"0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


class TwistdTests(SynchronousTestCase):
    """The server as users run it."""

    def start(self, *args: str, cwd: str | None = None) -> TwistdProcess:
        server = TwistdProcess(*args, cwd=cwd)
        self.addCleanup(server.stop)
        return server

    def test_serves_and_exits_cleanly(self) -> None:
        """
        JSON routes answer with a request id of the server's own, logged
        with the client's beside it; SIGTERM exits cleanly.
        """
        root = make_tree(self.mktemp(), ROUTES)
        server = self.start("--routes", root)
        status, headers, body = server.request(
            "GET", "/items/42", headers={"X-Request-Id": "e2e-1"}
        )
        self.assertEqual((status, json.loads(body)), (200, {"id": "42"}))
        ours = headers["x-request-id"]
        self.assertNotEqual(ours, "e2e-1")
        assert_clean_exit(self, server)
        output = server.output()
        self.assertIn('"GET /items/42 HTTP/1.1" 200', output)
        self.assertIn(f"request_id={ours} ", output)
        self.assertIn("client_request_id=e2e-1", output)

    def test_trusted_proxy_request_id(self) -> None:
        """From a ``--trusted-proxy`` peer, its ``X-Request-Id`` is the id."""
        root = make_tree(self.mktemp(), ROUTES)
        server = self.start("--routes", root, "--trusted-proxy", "127.0.0.0/8")
        _, headers, _ = server.request(
            "GET", "/items/42", headers={"X-Request-Id": "lb-7"}
        )
        self.assertEqual(headers["x-request-id"], "lb-7")
        assert_clean_exit(self, server)
        self.assertIn("request_id=lb-7 ", server.output())

    def test_bad_input_never_kills(self) -> None:
        """404, 405, 400, 413 and 500 answer JSON; the server keeps serving."""
        root = make_tree(self.mktemp(), ROUTES)
        server = self.start("--routes", root, "--body-limit", "1000")
        cases = [
            (("GET", "/nope"), 404),
            (("DELETE", "/items/1"), 405),
            (("POST", "/items/1", b"{bad", {"Content-Type": "application/json"}), 400),
            (("POST", "/items/1", b"x" * 5000, {"Content-Type": "text/plain"}), 413),
            (("GET", "/crash"), 500),
        ]
        for args, expected in cases:
            with self.subTest(request=args[:2]):
                status, headers, body = server.request(*args)
                self.assertEqual(status, expected)
                self.assertIn("message", json.loads(body)["error"])
                self.assertNotIn(b"exploded", body)
        self.assertEqual(server.request("GET", "/")[0], 200)
        output = server.output()
        self.assertIn("handler exploded", output)
        assert_clean_exit(self, server, errors_logged=True)

    def test_timer_error_is_logged_not_fatal(self) -> None:
        """An exception in a handler's timer is logged; the server lives on."""
        root = make_tree(self.mktemp(), ROUTES)
        server = self.start("--routes", root)
        self.assertEqual(server.request("GET", "/timer")[2], b"scheduled")
        status, _, body = server.request("GET", "/items/7")
        self.assertEqual((status, json.loads(body)), (200, {"id": "7"}))
        self.assertIn("timer exploded", server.output())
        assert_clean_exit(self, server, errors_logged=True)

    def test_truncated_request_is_harmless(self) -> None:
        """A client that sends half a request and leaves does no harm."""
        root = make_tree(self.mktemp(), ROUTES)
        server = self.start("--routes", root)
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            s.sendall(
                b"POST /items/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{"
            )
        self.assertEqual(server.request("GET", "/")[0], 200)
        assert_clean_exit(self, server)

    def test_in_flight_response_survives_sigterm(self) -> None:
        """
        SPEC §6.7: a response still being made at SIGTERM is finished and
        reaches the client whole before the process exits; an idle
        keep-alive connection is closed; the log says 200 and the bytes.
        """
        root = make_tree(self.mktemp(), ROUTES)
        server = self.start("--routes", root, "--shutdown-grace", "3")
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        self.addCleanup(idle.close)
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(read_response(idle)[0], b"HTTP/1.1 200 OK")
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        self.addCleanup(slow.close)
        slow.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        server.wait_for("slow request started")
        server.process.send_signal(signal.SIGTERM)
        status, headers, body = read_response(slow)
        self.assertEqual(status, b"HTTP/1.1 200 OK")
        self.assertEqual(body, b"x" * 200000)
        self.assertEqual(slow.recv(1), b"")
        self.assertEqual(idle.recv(1), b"")
        assert_clean_exit(self, server)
        self.assertIn('"GET /slow HTTP/1.1" 200 200000', server.output())

    def test_access_log_formats(self) -> None:
        """
        ``combined`` logs a stream the client left with ``ended=client_gone``;
        ``json`` writes one object per line with the contract's keys;
        ``off`` writes none.
        """
        root = make_tree(self.mktemp(), ROUTES)
        server = self.start("--routes", root)
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            s.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            # (The head and the first event may arrive as two reads.)
            received = b""
            while b"data: hello" not in received and (chunk := s.recv(65536)):
                received += chunk
            self.assertIn(b"data: hello", received)
        line = server.wait_for(r'"GET /events HTTP/1.1" 200 .*ended=client_gone')
        self.assertIn("duration_ms=", line.string)
        assert_clean_exit(self, server)

        server = self.start(
            "--routes", root, "--access-log", "json", "--trusted-proxy", "127.0.0.1"
        )
        server.request("GET", "/items/9", headers={"X-Request-Id": "json-1"})
        found = server.wait_for(r'^\{"ts":.*"request_id":"json-1".*\}$')
        record = json.loads(found.group(0))
        self.assertEqual(
            set(record),
            {
                "ts",
                "request_id",
                "method",
                "path",
                "status",
                "bytes",
                "duration_ms",
                "client",
                "ended",
            },
        )
        self.assertEqual(
            (record["method"], record["path"], record["status"], record["ended"]),
            ("GET", "/items/9", 200, "complete"),
        )
        self.assertEqual(record["client"], "127.0.0.1")
        assert_clean_exit(self, server)

        server = self.start("--routes", root, "--access-log", "off")
        server.request("GET", "/items/10")
        assert_clean_exit(self, server)
        self.assertNotIn("/items/10", server.output())

    def test_config_file_and_pipeline(self) -> None:
        """
        ``./oxian.toml`` in the working directory configures the server; the
        pipeline runs (one factory call for 20 requests, middleware 401);
        SIGTERM runs ``shutdown(deps)``.
        """
        work = os.path.abspath(self.mktemp())
        stopped = os.path.join(work, "stopped.txt")
        make_tree(
            work,
            {
                "oxian.toml": """
                    routes = "app"
                    base-path = "/api"
                    cors-origin = ["https://app.example"]
                    cors-credentials = true
                """,
                "app/dependencies.py": f"""
                    CALLS = []

                    def dependencies(parent):
                        CALLS.append(1)
                        return {{"calls": CALLS}}

                    def shutdown(deps):
                        with open({stopped!r}, "w") as f:
                            f.write(str(len(deps["calls"])))
                """,
                "app/middleware.py": """
                    from oxian_tw import HttpError

                    def middleware(data, ctx):
                        token = ctx.request.headers.get("authorization")
                        if token != "Bearer demo-token":
                            raise HttpError(401)
                        return {"context": {"user": "demo"}}
                """,
                "app/me.py": """
                    def GET(data, ctx):
                        return {"user": ctx.user,
                                "calls": len(ctx.dependencies.calls)}
                """,
            },
        )
        server = self.start(cwd=work)
        origin = {"Origin": "https://app.example"}
        for _ in range(20):
            status, headers, body = server.request(
                "GET",
                "/api/me",
                headers={**origin, "Authorization": "Bearer demo-token"},
            )
            self.assertEqual(
                (status, json.loads(body)), (200, {"user": "demo", "calls": 1})
            )
            self.assertEqual(
                headers["access-control-allow-origin"], "https://app.example"
            )
            self.assertEqual(headers["access-control-allow-credentials"], "true")
        status, headers, _ = server.request("GET", "/api/me", headers=origin)
        self.assertEqual(status, 401)
        self.assertEqual(headers["access-control-allow-origin"], "https://app.example")
        assert_clean_exit(self, server)
        with open(stopped) as f:
            self.assertEqual(f.read(), "1")
