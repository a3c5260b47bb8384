"""
Tests for request handling through the real app, in memory (SPEC §2–§4).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from oxian_tw import OxianApp
from oxian_tw._connection import Phase
from oxian_tw._errors import RouteTreeError
from oxian_tw.testing import TestClient, TestResponse

from .helpers import RoutesTestCase, make_tree, own_timers

ROUTES = {
    "index.py": """
        def GET(data, ctx):
            return {"root": True}
    """,
    "echo.py": """
        def default(data, ctx):
            return {
                "method": ctx.request.method,
                "data": data,
                "body": ctx.request.body if not isinstance(ctx.request.body, dict)
                        or "doc" not in ctx.request.body else "file",
                "route": ctx.route,
                "request_id": ctx.request_id,
                "query": ctx.request.query,
                "path_params": ctx.request.path_params,
                "path": ctx.request.path,
                "url": ctx.request.url,
                "client": ctx.request.client,
                "header": ctx.request.headers.get("X-Custom"),
                "has_raw": ctx.request.raw is not None,
                "deps": dict(ctx.dependencies),
                "clock_is_app": ctx.clock is ctx.app.clock,
            }
    """,
    "users/[id].py": """
        def GET(data, ctx):
            return {"id": data["id"]}

        def DELETE(data, ctx):
            ctx.response.status(204)

        def PURGE(data, ctx):
            return "purged"
    """,
    "docs/[...path].py": """
        def GET(data, ctx):
            return {"path": data["path"]}
    """,
    "export/users.csv.py": """
        def GET(data, ctx):
            ctx.response.headers({"content-type": "text/csv"})
            return "id\\n1\\n"
    """,
    "returns.py": """
        import dataclasses

        import attrs

        from oxian_tw import Response

        @dataclasses.dataclass
        class Inner:
            x: int
            y: list

        @attrs.define
        class Stats:
            n: int

        @dataclasses.dataclass
        class Outer:
            name: str
            inner: Inner
            stats: Stats

        VALUES = {
            "none": None,
            "dict": {"a": 1},
            "list": [1, "x"],
            "int": 42,
            "float": 1.5,
            "bool": True,
            "str": "héllo",
            "empty-str": "",
            "empty-bytes": b"",
            "bytes": b"\\x00\\x01",
            "bytearray": bytearray(b"ab"),
            "response": Response({"made": True}, status=201, headers={"X-A": "b"}),
            "response-text": Response("plain", status=202),
            "nan": float("nan"),
            "object": object(),
            "dataclass": Outer("a", Inner(1, [1, 2]), Stats(2)),
            "nested-object": {"a": [object()]},
        }

        def GET(data, ctx):
            return VALUES[data["kind"]]
    """,
    "kinds/sync.py": """
        def GET(data, ctx):
            return "sync"
    """,
    "kinds/coroutine.py": """
        async def GET(data, ctx):
            await ctx.sleep(5)
            return "coroutine"
    """,
    "kinds/deferred.py": """
        from twisted.internet.task import deferLater

        def GET(data, ctx):
            return deferLater(ctx.clock, 3, lambda: "deferred")
    """,
    "errors.py": """
        from oxian_tw import HttpError

        class Teapot(Exception):
            status_code = 418

        def GET(data, ctx):
            kind = data["kind"]
            if kind == "http":
                raise HttpError(404, "File not found", code="E_NF",
                                details={"file": "x"}, headers={"Retry-After": "3"})
            if kind == "default-message":
                raise HttpError(409)
            if kind == "status-code":
                raise Teapot("short and stout")
            if kind == "after-header":
                ctx.response.headers({"content-type": "text/html"})
                raise HttpError(400, "bad")
            if kind == "header-name":
                ctx.response.headers({"Bad Name": "x"})
                return "never"
            if kind == "stream-header-name":
                ctx.response.stream(headers={"Bad Name": "x"}).write("never")
                return None
            if kind == "stream-length":
                ctx.response.stream(headers={"Content-Length": "abc"}).write("never")
                return None
            raise RuntimeError("secret internals")
    """,
    "controller.py": """
        def GET(data, ctx):
            kind = data["kind"]
            if kind == "status":
                ctx.response.status(201)
                ctx.response.headers({"X-One": "1", "x-two": 2})
                return {"ok": True}
            if kind == "redirect":
                ctx.response.redirect("/elsewhere")
                return None
            if kind == "redirect-301":
                ctx.response.redirect("/moved", status=301)
                return "moved"
            if kind == "send":
                ctx.response.send({"sent": 1}, status=202, headers={"X-S": "1"})
                ctx.response.send({"sent": 2})
                return {"ignored": True}
    """,
    "slow.py": """
        SEEN = []

        async def GET(data, ctx):
            ctx.response.send("early")
            await ctx.sleep(10)
            SEEN.append("after")
            raise RuntimeError("late failure")
    """,
    "hang.py": """
        from twisted.internet.defer import CancelledError

        EVENTS = []

        async def GET(data, ctx):
            try:
                await ctx.sleep(60)
            except CancelledError:
                EVENTS.append("cancelled")
                raise
            EVENTS.append("finished")
    """,
    "upload.py": """
        RAN = []

        def POST(data, ctx):
            RAN.append(len(ctx.request.raw_body))
            return {"size": len(ctx.request.raw_body)}
    """,
}


def result(testcase: SynchronousTestCase, d: Any) -> TestResponse:
    response = testcase.successResultOf(d)
    assert isinstance(response, TestResponse)
    return response


class AppTestCase(RoutesTestCase):
    """The shared route tree and a client for it."""

    routes = ROUTES

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return result(self, self.client.get(path, **kwargs))


class RoutingThroughAppTests(AppTestCase):
    """URLs reach the right file."""

    def test_routes(self) -> None:
        """Index, params, catch-all and literal dots."""
        self.assertEqual(self.get("/").json(), {"root": True})
        self.assertEqual(self.get("/users/7").json(), {"id": "7"})
        self.assertEqual(self.get("/docs/a/b/c").json(), {"path": ["a", "b", "c"]})
        response = self.get("/export/users.csv")
        self.assertEqual(response.text(), "id\n1\n")
        self.assertEqual(response.headers.get("content-type"), "text/csv")

    def test_empty_segments(self) -> None:
        """``/users/7``, ``/users/7/`` and ``//users//7//`` alike, no redirect."""
        for path in ("/users/7", "/users/7/", "//users//7//"):
            with self.subTest(path=path):
                response = self.get(path)
                self.assertEqual(response.code, 200)
                self.assertEqual(response.json(), {"id": "7"})

    def test_percent_decoded_params(self) -> None:
        """Params are percent-decoded per segment."""
        self.assertEqual(self.get("/users/J%C3%BCrgen%20X").json(), {"id": "Jürgen X"})

    def test_traversal_is_404(self) -> None:
        """``%2F``, ``%5C``, ``%00`` and ``..`` in a param give 404."""
        for path in (
            "/users/..%2F..%2Fetc",
            "/users/a%5Cb",
            "/users/a%00",
            "/users/..",
            "/docs/x/..%2fy",
        ):
            with self.subTest(path=path):
                response = self.get(path)
                self.assertEqual(response.code, 404)
                self.assertEqual(response.json(), {"error": {"message": "Not Found"}})

    def test_not_found(self) -> None:
        """No route: 404 with the JSON body."""
        response = self.get("/nope/nothing")
        self.assertEqual(response.code, 404)
        self.assertEqual(response.json(), {"error": {"message": "Not Found"}})
        self.assertEqual(
            response.headers.get("content-type"), "application/json; charset=utf-8"
        )

    def test_non_utf8_path(self) -> None:
        """A path that is not UTF-8 once decoded is a JSON 400."""
        response = self.get("/users/%FF")
        self.assertEqual(response.code, 400)
        self.assertIn("UTF-8", response.json()["error"]["message"])

    def test_shared_module_state(self) -> None:
        """
        Two route files share a module-level set through a sibling import:
        what one request adds, the other sees.
        """
        root = make_tree(
            self.mktemp(),
            {
                "chat/events.py": """
                    clients = set()

                    def GET(data, ctx):
                        clients.add(data["name"])
                        return sorted(clients)
                """,
                "chat/send.py": """
                    from .events import clients

                    def POST(data, ctx):
                        return {"clients": sorted(clients)}
                """,
            },
        )
        client = TestClient(root)
        result(self, client.get("/chat/events", query={"name": "ann"}))
        response = result(self, client.post("/chat/send", json={}))
        self.assertEqual(response.json(), {"clients": ["ann"]})

    def test_startup_conflict(self) -> None:
        """An app over a conflicting tree fails at construction."""
        root = make_tree(self.mktemp(), {"a.py": "", "a/index.py": ""})
        self.assertRaises(RouteTreeError, OxianApp, root, reactor=Clock())

    def test_base_path(self) -> None:
        """With a base path, routes live below it and nothing outside it."""
        app = OxianApp(self.root, reactor=Clock(), config={"base-path": "/api/v1/"})
        client = TestClient(app)
        self.assertEqual(
            result(self, client.get("/api/v1/users/1")).json(), {"id": "1"}
        )
        self.assertEqual(result(self, client.get("/api/v1")).json(), {"root": True})
        self.assertEqual(result(self, client.get("/api/v1x/users/1")).code, 404)
        self.assertEqual(result(self, client.get("/users/1")).code, 404)


class MethodTests(AppTestCase):
    """Method dispatch, 405, HEAD and OPTIONS."""

    def test_method_exports(self) -> None:
        """Upper-case exports, including non-standard tokens, handle their method."""
        self.assertEqual(
            result(self, self.client.request("PURGE", "/users/1")).text(), "purged"
        )
        self.assertEqual(result(self, self.client.delete("/users/1")).code, 204)

    def test_default(self) -> None:
        """``default`` handles every method."""
        for method in ("GET", "POST", "PATCH", "BREW"):
            with self.subTest(method=method):
                response = result(self, self.client.request(method, "/echo"))
                self.assertEqual(response.json()["method"], method)

    def test_405(self) -> None:
        """A method the file does not export: 405, JSON body and Allow."""
        response = result(self, self.client.post("/users/1"))
        self.assertEqual(response.code, 405)
        self.assertEqual(response.json(), {"error": {"message": "Method Not Allowed"}})
        self.assertEqual(
            response.headers.get("allow"), "GET, HEAD, DELETE, OPTIONS, PURGE"
        )

    def test_head_uses_get(self) -> None:
        """HEAD runs GET and sends headers with the length, never the body."""
        response = result(self, self.client.head("/users/1"))
        self.assertEqual(response.code, 200)
        self.assertEqual(response.body, b"")
        self.assertEqual(response.headers.get("content-length"), str(len('{"id":"1"}')))

    def test_options(self) -> None:
        """OPTIONS without a handler: 204 with Allow."""
        response = result(self, self.client.options("/users/1"))
        self.assertEqual(response.code, 204)
        self.assertEqual(
            response.headers.get("allow"), "GET, HEAD, DELETE, OPTIONS, PURGE"
        )
        self.assertEqual(response.body, b"")


class HandlerTests(AppTestCase):
    """Handler kinds, ``data`` and ``ctx``."""

    def test_sync(self) -> None:
        """A plain function's value is the response."""
        self.assertEqual(self.get("/kinds/sync").text(), "sync")

    def test_coroutine_on_clock(self) -> None:
        """An ``async def`` awaiting ``ctx.sleep`` finishes when the clock says."""
        d = self.client.get("/kinds/coroutine")
        self.assertNoResult(d)
        self.client.advance(4.9)
        self.assertNoResult(d)
        self.client.advance(0.1)
        self.assertEqual(result(self, d).text(), "coroutine")

    def test_deferred(self) -> None:
        """A Deferred-returning handler's result is the response."""
        d = self.client.get("/kinds/deferred")
        self.assertNoResult(d)
        self.client.advance(3)
        self.assertEqual(result(self, d).text(), "deferred")

    def test_data_merge_order(self) -> None:
        """Body < query < path params in ``data``."""
        root = make_tree(
            self.mktemp(),
            {"items/[id].py": "def default(data, ctx):\n    return data\n"},
        )
        client = TestClient(root)
        response = result(
            self,
            client.post(
                "/items/path",
                query={"id": "query", "q": "query"},
                json={"id": "body", "q": "body", "b": 1},
            ),
        )
        self.assertEqual(response.json(), {"id": "path", "q": "query", "b": 1})

    def test_ctx(self) -> None:
        """The ``ctx`` table: request fields, route, id, dependencies, clock."""
        response = result(
            self,
            self.client.post(
                "/echo?a=1&a=2&b=x",
                headers={"X-Custom": "yes", "X-Request-Id": "req-123"},
                form={"f": "v"},
            ),
        )
        body = response.json()
        self.assertEqual(body["method"], "POST")
        self.assertEqual(body["data"], {"f": "v", "a": ["1", "2"], "b": "x"})
        self.assertEqual(body["body"], {"f": "v"})
        self.assertEqual(body["query"], {"a": ["1", "2"], "b": "x"})
        self.assertEqual(body["route"], "/echo")
        # The client's id is not the request's (SPEC §3): ours, echoed.
        self.assertNotEqual(body["request_id"], "req-123")
        self.assertEqual(response.headers.get("x-request-id"), body["request_id"])
        self.assertEqual(body["path"], "/echo")
        self.assertEqual(body["url"], "http://127.0.0.1/echo?a=1&a=2&b=x")
        self.assertEqual(body["client"], "127.0.0.1")
        self.assertEqual(body["header"], "yes")
        self.assertEqual(body["path_params"], {})
        self.assertTrue(body["has_raw"])
        self.assertEqual(body["deps"], {})
        self.assertTrue(body["clock_is_app"])

    def test_request_id_fresh_when_insane(self) -> None:
        """An unsafe ``X-Request-Id`` is replaced by a fresh id."""
        response = result(
            self, self.client.get("/echo", headers={"X-Request-Id": "bad id <x>"})
        )
        rid = response.json()["request_id"]
        self.assertNotEqual(rid, "bad id <x>")
        # A process prefix and a counter: unique, and cheap to make.
        self.assertRegex(rid, "^[0-9a-f]{12}-[0-9a-f]+$")
        self.assertEqual(response.headers.get("x-request-id"), rid)
        again = result(self, self.client.get("/echo")).json()["request_id"]
        self.assertNotEqual(again, rid)
        self.assertEqual(again.partition("-")[0], rid.partition("-")[0])

    def test_dependencies_by_key_and_attribute(self) -> None:
        """App dependencies are read-only, by key and by attribute."""
        root = make_tree(
            self.mktemp(),
            {
                "index.py": """
                    def GET(data, ctx):
                        deps = ctx.dependencies
                        try:
                            deps["x"] = 1
                            writable = True
                        except TypeError:
                            writable = False
                        return [deps["name"], deps.name, writable]
                """
            },
        )
        app = OxianApp(root, dependencies={"name": "svc"}, reactor=Clock())
        self.assertEqual(
            result(self, TestClient(app).get("/")).json(), ["svc", "svc", False]
        )

    def test_invalid_json_body(self) -> None:
        """Invalid JSON is a 400 with the JSON error body; the handler never runs."""
        response = result(
            self,
            self.client.post(
                "/upload", body=b"{nope", headers={"Content-Type": "application/json"}
            ),
        )
        self.assertEqual(response.code, 400)
        self.assertIn("Invalid JSON", response.json()["error"]["message"])
        self.assertEqual(self.module("upload.py").RAN, [])


class DisconnectTests(AppTestCase):
    """A client that leaves cancels its handler."""

    def test_handler_cancelled(self) -> None:
        """
        The handler's coroutine gets CancelledError when the connection is
        lost, nothing is logged as an error, and it never resumes.
        """
        transport = StringTransport()
        channel = self.app.site().buildProtocol(None)
        channel.makeConnection(transport)
        channel.dataReceived(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        events = self.module("hang.py").EVENTS
        self.assertEqual(events, [])
        channel.connectionLost(ConnectionDone())
        self.assertEqual(events, ["cancelled"])
        self.clock.advance(60)
        self.assertEqual(events, ["cancelled"])
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.flushLoggedErrors(), [])


class ReturnValueTests(AppTestCase):
    """One test per row of the return-value table."""

    def kind(self, kind: str) -> TestResponse:
        return self.get("/returns", query={"kind": kind})

    def assertBody(
        self, kind: str, code: int, content_type: str | None, body: bytes
    ) -> None:
        response = self.kind(kind)
        self.assertEqual(response.code, code)
        self.assertEqual(response.headers.get("content-type"), content_type)
        self.assertEqual(response.body, body)

    def test_none(self) -> None:
        """``None``: 200, empty body, no content type."""
        self.assertBody("none", 200, None, b"")

    def test_dict(self) -> None:
        """A dict is JSON."""
        self.assertBody("dict", 200, "application/json; charset=utf-8", b'{"a":1}')

    def test_list(self) -> None:
        """A list is JSON."""
        self.assertBody("list", 200, "application/json; charset=utf-8", b'[1,"x"]')

    def test_number(self) -> None:
        """Numbers are JSON."""
        self.assertBody("int", 200, "application/json; charset=utf-8", b"42")
        self.assertBody("float", 200, "application/json; charset=utf-8", b"1.5")

    def test_bool(self) -> None:
        """A bool is JSON."""
        self.assertBody("bool", 200, "application/json; charset=utf-8", b"true")

    def test_str(self) -> None:
        """A str is UTF-8 text."""
        self.assertBody("str", 200, "text/plain; charset=utf-8", "héllo".encode())

    def test_empty(self) -> None:
        """An empty str or bytes keeps its content type (Twisted's own
        default type leaves an empty body without one)."""
        self.assertBody("empty-str", 200, "text/plain; charset=utf-8", b"")
        self.assertBody("empty-bytes", 200, "application/octet-stream", b"")

    def test_bytes(self) -> None:
        """Bytes-like values are octet streams."""
        self.assertBody("bytes", 200, "application/octet-stream", b"\x00\x01")
        self.assertBody("bytearray", 200, "application/octet-stream", b"ab")

    def test_response(self) -> None:
        """``Response`` gives exactly its status, headers and body."""
        response = self.kind("response")
        self.assertEqual(response.code, 201)
        self.assertEqual(response.headers.get("x-a"), "b")
        self.assertEqual(response.json(), {"made": True})
        response = self.kind("response-text")
        self.assertEqual(response.code, 202)
        self.assertEqual(response.text(), "plain")

    def test_unencodable(self) -> None:
        """
        NaN or an arbitrary object: a 500 saying what was returned (the
        type, not its repr), logged with the request id.
        """
        nan = self.kind("nan")
        self.assertEqual(nan.code, 500)
        self.assertEqual(nan.json()["error"]["code"], "unencodable_result")
        response = self.kind("object")
        self.assertEqual(response.code, 500)
        error = response.json()["error"]
        self.assertEqual(error["code"], "unencodable_result")
        self.assertIn("returned a builtins.object,", error["message"])
        self.assertIn("a dataclass or attrs instance", error["message"])

    def test_dataclass_and_attrs(self) -> None:
        """Dataclass and attrs instances are JSON objects, nested too."""
        response = self.kind("dataclass")
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.get("content-type"), "application/json; charset=utf-8"
        )
        self.assertEqual(
            response.json(),
            {"name": "a", "inner": {"x": 1, "y": [1, 2]}, "stats": {"n": 2}},
        )
        nested = self.kind("nested-object")
        self.assertEqual(nested.code, 500)
        self.assertIn("inside its result", nested.json()["error"]["message"])


class ErrorTests(AppTestCase):
    """Errors become JSON error bodies."""

    def kind(self, kind: str) -> TestResponse:
        return self.get("/errors", query={"kind": kind})

    def test_http_error(self) -> None:
        """HttpError: status, message, code, details and headers."""
        response = self.kind("http")
        self.assertEqual(response.code, 404)
        self.assertEqual(
            response.json(),
            {
                "error": {
                    "message": "File not found",
                    "code": "E_NF",
                    "details": {"file": "x"},
                }
            },
        )
        self.assertEqual(response.headers.get("retry-after"), "3")

    def test_default_message(self) -> None:
        """Without a message, the reason phrase."""
        self.assertEqual(
            self.kind("default-message").json(), {"error": {"message": "Conflict"}}
        )

    def test_status_code_attribute(self) -> None:
        """Any exception with an integer ``status_code`` is an HTTP error."""
        response = self.kind("status-code")
        self.assertEqual(response.code, 418)
        self.assertEqual(response.json(), {"error": {"message": "short and stout"}})

    def test_error_body_is_json(self) -> None:
        """A content type set before the error does not mislabel the JSON."""
        response = self.kind("after-header")
        self.assertEqual(response.code, 400)
        self.assertEqual(
            response.headers.get("content-type"), "application/json; charset=utf-8"
        )

    def test_500_hides_details(self) -> None:
        """Other exceptions: 500, generic message, traceback only in the log."""
        response = self.kind("boom")
        self.assertEqual(response.code, 500)
        self.assertEqual(
            response.json(), {"error": {"message": "Internal Server Error"}}
        )
        self.assertNotIn(b"secret", response.body)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_500_logged_with_request_id(self) -> None:
        """The logged failure names the request id."""
        from twisted.logger import globalLogPublisher

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        response = self.get(
            "/errors", query={"kind": "boom"}, headers={"X-Request-Id": "rid-9"}
        )
        self.flushLoggedErrors(RuntimeError)
        request_id = response.headers.get("x-request-id")
        (failed,) = [e for e in events if "log_failure" in e]
        self.assertEqual(failed["request_id"], request_id)
        # The client's own id is logged beside ours.
        self.assertEqual(failed["client_request_id"], "rid-9")
        self.assertIn(", client's id rid-9)", formatEvent(failed))


class BadHeaderTests(AppTestCase):
    """
    A header the handler sets that cannot go on the wire is a 500 before
    anything is sent, and the request is over (not held in flight until the
    client leaves, which would hold a shutdown for its whole grace).
    """

    def test_before_commit(self) -> None:
        from twisted.web.http_headers import InvalidHeaderName

        for kind in ["header-name", "stream-header-name", "stream-length"]:
            with self.subTest(kind=kind):
                response = self.get("/errors", query={"kind": kind})
                self.assertEqual(response.code, 500)
                self.successResultOf(response.finished())
                self.assertEqual(
                    response.json(), {"error": {"message": "Internal Server Error"}}
                )
                self.assertNotIn(b"never", response.body)
                self.assertEqual(self.app._in_flight, 0)
        self.flushLoggedErrors(InvalidHeaderName, ValueError)


class FormFieldTests(AppTestCase):
    """``form-fields`` caps the fields of a form body: more is a JSON 413."""

    config = {"form-fields": 2}

    def test_cap(self) -> None:
        ok = result(self, self.client.post("/echo", form={"a": "1", "b": "2"}))
        self.assertEqual(ok.json()["data"], {"a": "1", "b": "2"})
        refused = result(
            self, self.client.post("/echo", form={"a": "1", "b": "2", "c": "3"})
        )
        self.assertEqual(refused.code, 413)
        self.assertEqual(refused.json(), {"error": {"message": "Too many form fields"}})


class DebugErrorTests(AppTestCase):
    """``--debug`` puts the traceback in 500 bodies."""

    config = {"debug": True}

    def test_traceback_in_body(self) -> None:
        """The body carries the traceback."""
        response = self.get("/errors", query={"kind": "boom"})
        self.assertEqual(response.code, 500)
        error = response.json()["error"]
        self.assertEqual(error["message"], "Internal Server Error")
        self.assertIn("RuntimeError: secret internals", error["traceback"])
        self.flushLoggedErrors(RuntimeError)


class ControllerTests(AppTestCase):
    """``ctx.response``: status, headers, redirect, send."""

    def kind(self, kind: str) -> TestResponse:
        return self.get("/controller", query={"kind": kind})

    def test_status_and_headers(self) -> None:
        """``status`` and ``headers`` shape the response of the return value."""
        response = self.kind("status")
        self.assertEqual(response.code, 201)
        self.assertEqual(response.headers.get("x-one"), "1")
        self.assertEqual(response.headers.get("x-two"), "2")
        self.assertEqual(response.json(), {"ok": True})

    def test_redirect(self) -> None:
        """``redirect`` sets 302 and Location; a returned value is the body."""
        response = self.kind("redirect")
        self.assertEqual(response.code, 302)
        self.assertEqual(response.headers.get("location"), "/elsewhere")
        response = self.kind("redirect-301")
        self.assertEqual(response.code, 301)
        self.assertEqual(response.text(), "moved")

    def test_send_commits_once(self) -> None:
        """``send`` commits at once; a second send and the return value are ignored."""
        response = self.kind("send")
        self.assertEqual(response.code, 202)
        self.assertEqual(response.headers.get("x-s"), "1")
        self.assertEqual(response.json(), {"sent": 1})

    def test_send_before_handler_finishes(self) -> None:
        """
        The client has the sent response while the handler still runs; a
        later failure is logged, not sent.
        """
        d = self.client.get("/slow")
        response = result(self, d)
        self.successResultOf(response.finished())
        self.assertEqual(response.text(), "early")
        self.assertEqual(self.module("slow.py").SEEN, [])
        self.client.advance(10)
        self.assertEqual(self.module("slow.py").SEEN, ["after"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class BodyLimitTests(AppTestCase):
    """Bodies over the limit are refused before the handler runs."""

    config = {"body-limit": 100}

    def test_content_length_over_limit(self) -> None:
        """A declared length over the limit: 413 JSON, handler never runs."""
        response = result(self, self.client.post("/upload", body=b"x" * 101))
        self.assertEqual(response.code, 413)
        self.assertEqual(
            response.json(), {"error": {"message": "Request body too large"}}
        )
        self.assertEqual(self.module("upload.py").RAN, [])

    def test_at_limit(self) -> None:
        """A body of exactly the limit is served."""
        response = result(self, self.client.post("/upload", body=b"x" * 100))
        self.assertEqual(response.json(), {"size": 100})

    def channel(self) -> tuple[Any, StringTransport]:
        transport = StringTransport()
        channel = self.app.site().buildProtocol(None)
        channel.makeConnection(transport)
        return channel, transport

    def test_declared_length_refused_before_body(self) -> None:
        """The 413 goes out on the headers alone and the connection closes."""
        channel, transport = self.channel()
        channel.dataReceived(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
        )
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 "))
        self.assertTrue(transport.disconnecting)
        channel.dataReceived(b"x" * 1000)
        self.assertEqual(self.module("upload.py").RAN, [])

    def test_expect_continue_refused_without_continue(self) -> None:
        """
        ``Expect: 100-continue`` with a length over the limit: the 413 and
        nothing else (no ``100 Continue`` inviting the body).
        """
        channel, transport = self.channel()
        channel.dataReceived(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: 1000000\r\n\r\n"
        )
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 "))
        self.assertNotIn(b"100 Continue", transport.value())
        self.assertTrue(transport.disconnecting)

    def test_expect_continue_within_the_limit(self) -> None:
        """Within the limit, ``Expect: 100-continue`` still gets its ``100``."""
        channel, transport = self.channel()
        channel.dataReceived(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: 2\r\n\r\n"
        )
        self.assertEqual(transport.value(), b"HTTP/1.1 100 Continue\r\n\r\n")

    def test_chunked_refused_once_over(self) -> None:
        """A chunked body is refused as soon as it crosses the limit."""
        channel, transport = self.channel()
        channel.dataReceived(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        channel.dataReceived(b"50\r\n" + b"x" * 0x50 + b"\r\n")
        self.assertEqual(transport.value(), b"")
        channel.dataReceived(b"50\r\n" + b"x" * 0x50 + b"\r\n0\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 "))
        body = transport.value().split(b"\r\n\r\n", 1)[1]
        self.assertEqual(json.loads(body)["error"]["message"], "Request body too large")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.module("upload.py").RAN, [])

    def test_limit_in_foreign_site(self) -> None:
        """Mounted in another Site, a large body still gets 413 (after reading)."""
        root = Resource()
        root.putChild(b"api", self.app.resource())
        transport = StringTransport()
        channel = Site(root, reactor=self.clock).buildProtocol(None)
        channel.makeConnection(transport)
        channel.dataReceived(
            b"POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n"
            + b"x" * 101
        )
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 "))
        self.assertEqual(self.module("upload.py").RAN, [])


def answer(site: Site, request: bytes) -> tuple[bytes, Any]:
    """The head and the body (JSON when it is) ``site`` answers ``request``."""
    transport = StringTransport()
    channel = site.buildProtocol(None)
    channel.makeConnection(transport)
    channel.dataReceived(request)
    head, body = transport.value().split(b"\r\n\r\n", 1)
    return head, json.loads(body) if body.startswith(b"{") else body


class HostTests(AppTestCase):
    """A bad or missing ``Host`` is a JSON 400 wherever the app is served."""

    def test_site_refuses_before_any_resource(self) -> None:
        """
        ``app.site(root)`` answers 400 itself, whatever the root: a root
        resource (a Klein app's, say) never sees the request.
        """
        seen: list[bytes] = []

        class Root(Resource):
            isLeaf = True

            def render_GET(self, request: Any) -> bytes:
                seen.append(request.uri)
                return b"root"

        site = self.app.site(Root())
        for request, message in [
            (b"GET / HTTP/1.1\r\nHost: a..b\r\n\r\n", "Invalid Host header"),
            (b"GET / HTTP/1.1\r\nHost: \xff\r\n\r\n", "Invalid Host header"),
            (b"GET / HTTP/1.1\r\n\r\n", "Missing Host header"),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                "More than one Host header",
            ),
        ]:
            with self.subTest(request=request):
                events: list[dict[str, Any]] = []
                globalLogPublisher.addObserver(events.append)
                try:
                    head, body = answer(site, request)
                finally:
                    globalLogPublisher.removeObserver(events.append)
                self.assertTrue(head.startswith(b"HTTP/1.1 400 "), head)
                self.assertEqual(body, {"error": {"message": message}})
                self.assertIn(b"X-Request-Id: ", head)
                self.assertFalse([e for e in events if e.get("log_failure")])
        self.assertEqual(seen, [])
        head, body = answer(site, b"GET / HTTP/1.0\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.0 200 "), head)
        self.assertEqual(seen, [b"/"])

    def test_app_in_foreign_site(self) -> None:
        """Mounted in another Site, the file routes check the Host themselves."""
        root = Resource()
        root.putChild(b"api", self.app.resource())
        site = Site(root, reactor=self.clock)
        head, body = answer(site, b"GET /api/ HTTP/1.1\r\nHost: a..b\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 400 "), head)
        self.assertEqual(body, {"error": {"message": "Invalid Host header"}})
        head, body = answer(site, b"GET /api/ HTTP/1.1\r\nHost: a.b\r\n\r\n")
        self.assertEqual(body, {"root": True})


class ObsTextTests(AppTestCase):
    """Header bytes beyond ASCII (obs-text) read as Latin-1, never a 500."""

    def test_encoded_control_in_path(self) -> None:
        """``%0A`` in a path is the JSON 404 like any unknown path."""
        head, body = answer(self.app.site(), b"GET /x%0Ay HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 404 "), head)
        self.assertEqual(body, {"error": {"message": "Not Found"}})

    def test_header_value(self) -> None:
        head, body = answer(
            self.app.site(),
            b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Custom: Bearer \xe9\xff\r\n\r\n",
        )
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        self.assertEqual(body["header"], "Bearer \xe9\xff")


class BlockingTests(AppTestCase):
    """Serving a request that holds the reactor > 0.5 s names its route."""

    def served_in(self, seconds: float) -> list[dict[str, Any]]:
        from oxian_tw import _exchange

        times = iter([100.0, 100.0 + seconds])
        self.patch(_exchange, "_wall_clock", lambda: next(times))
        self.logged.clear()
        self.get("/users/7")
        return [
            e for e in self.logged if "blocked the reactor" in e.get("log_format", "")
        ]

    def test_warning(self) -> None:
        (event,) = self.served_in(2.0)
        self.assertEqual(event["route"], "/users/:id")
        self.assertEqual(event["seconds"], 2.0)
        self.assertEqual(event["log_level"].name, "warn")
        self.assertIn("deferToThread", event["log_format"])

    def test_quick_is_quiet(self) -> None:
        self.assertEqual(self.served_in(0.4), [])


class TimeoutTests(AppTestCase):
    """
    ``--header-timeout`` (the whole head within it from its first byte) and
    ``--body-timeout`` (no body progress for it): 408 JSON, then closed.
    """

    def connect(self) -> tuple[Any, StringTransport]:
        transport = StringTransport()
        channel = self.app.site().buildProtocol(None)
        channel.makeConnection(transport)
        return channel, transport

    def timers(self) -> list[Any]:
        """
        Pending calls besides the site's shared deadline timers (none per
        connection: Twisted's idle timer is off).
        """
        return own_timers(self.clock)

    def assert_408(self, transport: StringTransport, message: str) -> None:
        head, body = transport.value().split(b"\r\n\r\n", 1)
        self.assertTrue(head.startswith(b"HTTP/1.1 408 "), head)
        self.assertIn(b"Connection: close", head)
        self.assertIn(b"X-Request-Id: ", head)
        self.assertEqual(json.loads(body), {"error": {"message": message}})
        self.assertTrue(transport.disconnecting)

    def test_trickled_head(self) -> None:
        """A header line every 10 s: cut 15 s after the head's first byte."""
        channel, transport = self.connect()
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n")
        self.clock.advance(10)
        channel.dataReceived(b"X-Slow: 1\r\n")
        self.clock.advance(4.9)
        self.assertEqual(transport.value(), b"")
        self.clock.advance(0.1)
        self.assert_408(transport, "Request head not received in time")
        [event] = [
            e for e in self.logged if e.get("log_format", "").startswith("408: ")
        ]
        self.assertEqual(event["timeout"], 15.0)
        self.assertIn(event["request_id"].encode(), transport.value())

    def test_first_bytes_only(self) -> None:
        """Bytes too few to tell HTTP/1.1 from HTTP/2 are a head too."""
        channel, transport = self.connect()
        channel.dataReceived(b"G")
        self.clock.advance(15)
        self.assert_408(transport, "Request head not received in time")

    def test_split_head_in_time(self) -> None:
        """A head in two reads within the timeout is served; no timer stays."""
        channel, transport = self.connect()
        channel.dataReceived(b"GET / HTTP/1.1\r\n")
        deadlines = self.app._sites[-1].phase_deadlines
        self.assertEqual(channel.phase, Phase.HEAD)
        self.assertTrue(deadlines.pending(channel, Phase.HEAD))
        self.clock.advance(14)
        channel.dataReceived(b"Host: x\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 "))
        self.assertEqual(self.timers(), [])
        # The head's deadline, passing now, no longer applies.
        self.clock.advance(2)
        self.assertEqual(channel.phase, Phase.IDLE)
        self.assertFalse(transport.disconnecting)

    def test_whole_heads_start_no_timer(self) -> None:
        """
        A head read whole schedules nothing; an idle keep-alive connection
        between requests is not cut by the head timeout, and a later
        trickled head is.
        """
        channel, transport = self.connect()
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 "))
        self.assertEqual(self.timers(), [])
        self.assertEqual(channel.phase, Phase.IDLE)
        self.clock.advance(29)
        self.assertFalse(transport.disconnecting)
        transport.clear()
        channel.dataReceived(b"GET / HTTP/1.1\r\n")
        self.clock.advance(15)
        self.assert_408(transport, "Request head not received in time")

    def test_stalled_body(self) -> None:
        """
        Each body chunk restarts the 30 s; 30 s without one is a 408 and
        the handler never runs.
        """
        channel, transport = self.connect()
        channel.dataReceived(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nxxxxx"
        )
        self.clock.advance(29)
        channel.dataReceived(b"x")
        self.clock.advance(29)
        self.assertEqual(transport.value(), b"")
        self.clock.advance(1)
        self.assert_408(transport, "Request body not received in time")
        self.assertEqual(self.module("upload.py").RAN, [])

    def test_chunked_body_in_time(self) -> None:
        """A chunked body that keeps coming is served; the timer ends with it."""
        channel, transport = self.connect()
        channel.dataReceived(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(3):
            self.clock.advance(20)
            channel.dataReceived(b"1\r\nx\r\n")
        channel.dataReceived(b"0\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 "))
        self.assertEqual(self.module("upload.py").RAN, [3])
        self.assertEqual(self.timers(), [])


class HeadSizeTests(TimeoutTests):
    """
    A request head over 16 KiB (Twisted's own limit) is answered 414 (the
    request line alone) or 431, JSON, and the connection closed; Twisted
    alone would close without a word.
    """

    def answer(self, *chunks: bytes) -> tuple[bytes, Any, StringTransport]:
        channel, transport = self.connect()
        for chunk in chunks:
            channel.dataReceived(chunk)
        head, _, body = transport.value().partition(b"\r\n\r\n")
        return head, json.loads(body) if body.startswith(b"{") else body, transport

    def test_long_request_line(self) -> None:
        head, body, transport = self.answer(b"GET /?" + b"a" * 65536)
        self.assertTrue(head.startswith(b"HTTP/1.1 414 "), head)
        self.assertEqual(body, {"error": {"message": "Request line too long"}})
        self.assertIn(b"X-Request-Id: ", head)
        self.assertTrue(transport.disconnecting)

    def test_many_headers(self) -> None:
        many = b"".join(b"X-%d: y\r\n" % n for n in range(2000))
        head, body, transport = self.answer(b"GET / HTTP/1.1\r\nHost: x\r\n" + many)
        self.assertTrue(head.startswith(b"HTTP/1.1 431 "), head)
        self.assertEqual(
            body, {"error": {"message": "Request header fields too large"}}
        )
        self.assertTrue(transport.disconnecting)

    def test_head_growing_over_reads(self) -> None:
        lines = [b"X-%d: %s\r\n" % (n, b"y" * 100) for n in range(200)]
        head, _, _ = self.answer(b"GET / HTTP/1.1\r\nHost: x\r\n", *lines)
        self.assertTrue(head.startswith(b"HTTP/1.1 431 "), head)

    def test_large_body_after_small_head(self) -> None:
        """A 1 MiB body read with its head, or a head split over reads: served."""
        body = b"x" * (1024 * 1024 - 1)
        head, answer, _ = self.answer(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
            % len(body)
            + body
        )
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        self.assertEqual(answer, {"size": len(body)})
        big = b"X-Big: " + b"y" * 15000 + b"\r\n"
        head, _, _ = self.answer(b"GET / HTTP/1.1\r\nHost: x\r\n", big, b"\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)


class TimeoutSettingTests(AppTestCase):
    """The timeouts come from the settings."""

    config = {"header-timeout": 2, "body-timeout": 3}

    def test_settings(self) -> None:
        site = self.app.site()
        self.assertEqual((site.header_timeout, site.body_timeout), (2.0, 3.0))
        transport = StringTransport()
        channel = site.buildProtocol(None)
        channel.makeConnection(transport)
        channel.dataReceived(b"GET / HTTP/1.1\r\n")
        self.clock.advance(2)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 "))


class EmbeddingTests(AppTestCase):
    """``app.resource()`` under a child of an existing Site."""

    def test_prefix_stripped(self) -> None:
        """Mounted at /api/v2, the app sees paths below the mount."""
        root = Resource()
        api = Resource()
        root.putChild(b"api", api)
        api.putChild(b"v2", self.app.resource())
        transport = StringTransport()
        channel = Site(root, reactor=self.clock).buildProtocol(None)
        channel.makeConnection(transport)
        channel.dataReceived(b"GET /api/v2/users/5 HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = transport.value().split(b"\r\n\r\n", 1)
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "))
        self.assertEqual(body, b'{"id":"5"}')

    def test_service(self) -> None:
        """``app.service()`` is an IService listening on each description."""
        from twisted.application.service import IService, MultiService
        from twisted.internet.testing import MemoryReactorClock

        reactor = MemoryReactorClock()
        app = OxianApp(self.root, reactor=reactor)
        parent = MultiService()
        service = app.service(listen=["tcp:8123:interface=127.0.0.1", "tcp:8124"])
        self.assertTrue(IService.providedBy(service))
        service.setServiceParent(parent)
        parent.startService()
        self.assertEqual(sorted(p[0] for p in reactor.tcpServers), [8123, 8124])
        # Twisted's default backlog is 50; ours is LISTEN_BACKLOG.
        self.assertEqual({p[2] for p in reactor.tcpServers}, {1024})
        self.successResultOf(parent.stopService())

    def test_listen_backlog(self) -> None:
        """A listener without ``backlog=`` gets 1024; one that names it keeps it."""
        from oxian_tw._listen import with_backlog

        self.assertEqual(with_backlog("tcp:8080"), "tcp:8080:backlog=1024")
        self.assertEqual(with_backlog("8080"), "tcp:8080:backlog=1024")
        self.assertEqual(
            with_backlog("ssl:8443:privateKey=k.pem:certKey=c.pem"),
            "ssl:8443:privateKey=k.pem:certKey=c.pem:backlog=1024",
        )
        self.assertEqual(with_backlog("tcp:0:backlog=5"), "tcp:0:backlog=5")
        self.assertEqual(
            with_backlog("systemd:domain=INET:index=0"), "systemd:domain=INET:index=0"
        )
