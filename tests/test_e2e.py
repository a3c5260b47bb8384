"""
End-to-end tests: the real ``twistd -n oxian`` on an ephemeral 127.0.0.1
port, over real sockets, stopped with SIGTERM.
"""

from __future__ import annotations

import json
import os
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
}


class TwistdTests(SynchronousTestCase):
    """The server as users run it."""

    def start(self, *args: str, cwd: str | None = None) -> TwistdProcess:
        server = TwistdProcess(*args, cwd=cwd)
        self.addCleanup(server.stop)
        return server

    def test_serves_and_exits_cleanly(self) -> None:
        """JSON routes answer with a request id, logged; SIGTERM exits cleanly."""
        root = make_tree(self.mktemp(), ROUTES)
        server = self.start("--routes", root)
        status, headers, body = server.request(
            "GET", "/items/42", headers={"X-Request-Id": "e2e-1"}
        )
        self.assertEqual((status, json.loads(body)), (200, {"id": "42"}))
        self.assertEqual(headers["x-request-id"], "e2e-1")
        assert_clean_exit(self, server)
        output = server.output()
        self.assertIn('"GET /items/42 HTTP/1.1" 200', output)
        self.assertIn("request_id=e2e-1", output)

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
