"""
The per-folder pipeline (SPEC §7): ``dependencies.py``, ``middleware.py``
and ``interceptors.py``, through the in-memory client on a ``Clock``.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw import OxianApp
from oxian_tw._errors import RouteTreeError
from oxian_tw.testing import TestClient

from .helpers import RoutesTestCase, make_tree


class DependenciesTests(RoutesTestCase):
    """``dependencies.py``: singletons, merged root → leaf."""

    routes = {
        "dependencies.py": """
            CALLS = []

            def dependencies(parent):
                CALLS.append(dict(parent))
                return {"db": "root-db", "name": "root", "calls": len(CALLS)}
        """,
        "index.py": """
            def GET(data, ctx):
                return dict(ctx.dependencies)
        """,
        "shop/dependencies.py": """
            def dependencies(parent):
                return {"name": "shop", "parent_keys": sorted(parent),
                        "db_seen": parent["db"]}
        """,
        "shop/items/[id].py": """
            def GET(data, ctx):
                return {"deps": dict(ctx.dependencies), "db": ctx.dependencies.db}
        """,
        "readonly.py": """
            def GET(data, ctx):
                outcome = []
                try:
                    ctx.dependencies["db"] = "x"
                except TypeError:
                    outcome.append("no item assignment")
                try:
                    ctx.dependencies.missing
                except AttributeError as exc:
                    outcome.append(str(exc))
                return outcome
        """,
    }

    def setUp(self) -> None:
        super().setUp()
        # App-level dependencies are the root's parent.
        self.app = OxianApp(self.root, reactor=self.clock, dependencies={"app": 1})
        self.client = TestClient(self.app)

    def test_once_across_100_requests(self) -> None:
        """The factory runs once however many requests use it."""
        for _ in range(100):
            response = self.get("/")
            self.assertEqual(response.json()["calls"], 1)
        self.assertEqual(len(self.module("dependencies.py").CALLS), 1)

    def test_lazy(self) -> None:
        """Nothing runs before the first request that needs it."""
        self.assertEqual(self.module("dependencies.py").CALLS, [])

    def test_merged_root_to_leaf(self) -> None:
        """
        Children see the parents' values, inner keys win, and the app's
        dependencies are the root's parent.
        """
        response = self.get("/shop/items/1")
        self.assertEqual(
            response.json(),
            {
                "deps": {
                    "app": 1,
                    "db": "root-db",
                    "name": "shop",
                    "calls": 1,
                    "parent_keys": ["app", "calls", "db", "name"],
                    "db_seen": "root-db",
                },
                "db": "root-db",
            },
        )
        self.assertEqual(self.module("dependencies.py").CALLS, [{"app": 1}])
        self.assertEqual(self.get("/").json()["name"], "root")

    def test_read_only(self) -> None:
        """``ctx.dependencies`` refuses assignment; a missing name says which."""
        self.assertEqual(
            self.get("/readonly").json(),
            ["no item assignment", "no dependency named 'missing'"],
        )


class ConcurrentFirstRequestsTests(RoutesTestCase):
    """Concurrent first requests share one evaluation."""

    routes = {
        "dependencies.py": """
            from twisted.internet.defer import Deferred

            CALLS = []
            GATE = Deferred()

            async def dependencies(parent):
                CALLS.append(1)
                await GATE
                return {"pool": "ready"}
        """,
        "a.py": """
            def GET(data, ctx):
                return ctx.dependencies.pool
        """,
        "sub/b.py": """
            def GET(data, ctx):
                return ctx.dependencies.pool
        """,
    }

    def test_one_evaluation(self) -> None:
        """Ten waiting requests, one factory call, all answered once it is done."""
        pending = [self.client.get("/a" if i % 2 else "/sub/b") for i in range(10)]
        module = self.module("dependencies.py")
        self.assertEqual(module.CALLS, [1])
        for d in pending:
            self.assertNoResult(d)
        module.GATE.callback(None)
        self.client.flush()
        for d in pending:
            response = self.successResultOf(d)
            self.assertEqual((response.code, response.text()), (200, "ready"))
        self.assertEqual(self.get("/a").text(), "ready")
        self.assertEqual(module.CALLS, [1])

    def test_client_leaving_while_waiting(self) -> None:
        """A request that leaves while the factory runs does not disturb the others."""
        first = self.client.get("/a")
        second = self.client.get("/a")
        self.client._pumps[0].clientIO.loseConnection()
        self.client.flush()
        self.failureResultOf(first)
        module = self.module("dependencies.py")
        module.GATE.callback(None)
        self.client.flush()
        self.assertEqual(self.successResultOf(second).text(), "ready")
        self.assertEqual(module.CALLS, [1])


class FailingFactoryTests(RoutesTestCase):
    """A failing factory: 500 below it, logged with the file, retried."""

    routes = {
        "ok.py": "def GET(data, ctx):\n    return 'ok'\n",
        "billing/dependencies.py": """
            ATTEMPTS = []

            def dependencies(parent):
                ATTEMPTS.append(1)
                if len(ATTEMPTS) == 1:
                    raise ConnectionError("database unreachable")
                return {"db": "connected"}
        """,
        "billing/invoices.py": """
            RAN = []

            def GET(data, ctx):
                RAN.append(1)
                return ctx.dependencies.db
        """,
        "shape/dependencies.py": """
            def dependencies(parent):
                return ["not", "a", "mapping"]
        """,
        "shape/x.py": "def GET(data, ctx):\n    return 1\n",
    }

    def test_500_logged_and_retried(self) -> None:
        response = self.get("/billing/invoices", headers={"X-Request-Id": "req-1"})
        self.assertEqual(response.code, 500)
        self.assertEqual(
            response.json(), {"error": {"message": "Internal Server Error"}}
        )
        self.assertEqual(self.module("billing/invoices.py").RAN, [])
        self.assertEqual(len(self.flushLoggedErrors(ConnectionError)), 1)
        log = self.log_text()
        self.assertIn("dependencies() in billing/dependencies.py failed", log)
        self.assertIn(
            f"request {response.headers.get('x-request-id')}, client's id req-1", log
        )
        # Routes elsewhere are unaffected; the next request tries again.
        self.assertEqual(self.get("/ok").text(), "ok")
        response = self.get("/billing/invoices")
        self.assertEqual((response.code, response.text()), (200, "connected"))
        self.assertEqual(len(self.module("billing/dependencies.py").ATTEMPTS), 2)

    def test_not_a_mapping(self) -> None:
        self.assertEqual(self.get("/shape/x").code, 500)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)
        self.assertIn("shape/dependencies.py", self.log_text())
        self.assertIn("returned list, not a mapping", self.log_text())


class ShutdownTests(RoutesTestCase):
    """``shutdown(deps)`` at stop, innermost first."""

    routes = {
        "_record.py": "EVENTS = []\n",
        "dependencies.py": """
            from ._record import EVENTS

            def dependencies(parent):
                EVENTS.append("start root")
                return {"pool": "root-pool"}

            async def shutdown(deps):
                EVENTS.append(("stop root", deps["pool"]))
        """,
        "inner/dependencies.py": """
            from twisted.internet.defer import Deferred
            from .._record import EVENTS

            SLOW = Deferred()

            def dependencies(parent):
                EVENTS.append("start inner")
                return {"cache": "inner-cache"}

            def shutdown(deps):
                EVENTS.append(("stop inner", dict(deps)))
                return SLOW
        """,
        "inner/x.py": "def GET(data, ctx):\n    return 1\n",
        "unused/dependencies.py": """
            from .._record import EVENTS

            def dependencies(parent):
                return {}

            def shutdown(deps):
                EVENTS.append("stop unused")
        """,
        "unused/y.py": "def GET(data, ctx):\n    return 1\n",
    }

    def test_reverse_order_with_own_deps(self) -> None:
        """Inner first, awaited, each with its folder's merged deps; unused never."""
        self.get("/inner/x")
        events = self.module("_record.py").EVENTS
        stopped = self.app.shutdown()
        self.assertEqual(
            events[-1], ("stop inner", {"pool": "root-pool", "cache": "inner-cache"})
        )
        self.assertNoResult(stopped)
        self.module("inner/dependencies.py").SLOW.callback(None)
        self.successResultOf(stopped)
        self.assertEqual(
            events,
            [
                "start root",
                "start inner",
                ("stop inner", {"pool": "root-pool", "cache": "inner-cache"}),
                ("stop root", "root-pool"),
            ],
        )

    def test_hanging_shutdown_is_cut(self) -> None:
        """A ``shutdown`` that never ends is cut after the grace; the next runs."""
        self.get("/inner/x")
        stopped = self.app.shutdown(grace=2)
        self.clock.advance(1.9)
        self.assertNoResult(stopped)
        self.clock.advance(0.1)
        self.successResultOf(stopped)
        self.assertEqual(
            self.module("_record.py").EVENTS[-1], ("stop root", "root-pool")
        )
        self.assertIn(
            "shutdown() in inner/dependencies.py took over 2", self.log_text()
        )

    def test_evaluated_again_after_shutdown(self) -> None:
        self.get("/inner/x")
        self.module("inner/dependencies.py").SLOW.callback(None)
        self.successResultOf(self.app.shutdown())
        self.get("/inner/x")
        events = self.module("_record.py").EVENTS
        self.assertEqual(events[-2:], ["start root", "start inner"])


class MiddlewareTests(RoutesTestCase):
    """``middleware.py``: root → leaf, merging, stopping."""

    routes = {
        "middleware.py": """
            ORDER = []

            def middleware(data, ctx):
                ORDER.append("root")
                return {"data": {"tenant": "acme", "level": "root"}}
        """,
        "private/middleware.py": """
            from oxian_tw import HttpError
            from .._lib import ORDER

            async def middleware(data, ctx):
                ORDER.append("private")
                auth = ctx.request.headers.get("authorization")
                if auth != "Bearer demo-token":
                    raise HttpError(401, "Missing or invalid token",
                                    headers={"WWW-Authenticate": "Bearer"})
                return {"context": {"user": {"name": "alice"}},
                        "data": {"level": "private"}}
        """,
        "_lib.py": "ORDER = []\n",
        "private/profile.py": """
            RAN = []

            def GET(data, ctx):
                RAN.append(1)
                return {"user": ctx.user, "tenant": data["tenant"],
                        "level": data["level"]}
        """,
        "cached/middleware.py": """
            def middleware(data, ctx):
                if "fresh" not in data:
                    ctx.response.send({"cached": True}, headers={"X-Cache": "hit"})
        """,
        "cached/page.py": """
            RAN = []

            def GET(data, ctx):
                RAN.append(1)
                return {"cached": False}
        """,
        "odd/middleware.py": """
            def middleware(data, ctx):
                if data.get("give") == "dict":
                    return {"user": "forgot the context key"}
                return data.get("give")
        """,
        "odd/x.py": """
            def GET(data, ctx):
                return "handler"
        """,
    }

    def test_context_and_data(self) -> None:
        """``ctx.user`` from middleware; data merged, inner wins."""
        response = self.get(
            "/private/profile", headers={"Authorization": "Bearer demo-token"}
        )
        self.assertEqual(
            response.json(),
            {"user": {"name": "alice"}, "tenant": "acme", "level": "private"},
        )
        self.assertEqual(self.module("middleware.py").ORDER, ["root"])
        self.assertEqual(self.module("_lib.py").ORDER, ["private"])

    def test_401_stops_the_handler(self) -> None:
        response = self.get("/private/profile")
        self.assertEqual(response.code, 401)
        self.assertEqual(
            response.json(), {"error": {"message": "Missing or invalid token"}}
        )
        self.assertEqual(response.headers.get("www-authenticate"), "Bearer")
        self.assertEqual(self.module("private/profile.py").RAN, [])

    def test_send_stops_the_handler(self) -> None:
        response = self.get("/cached/page")
        self.assertEqual(response.json(), {"cached": True})
        self.assertEqual(response.headers.get("x-cache"), "hit")
        self.assertEqual(self.module("cached/page.py").RAN, [])
        self.assertEqual(self.get("/cached/page?fresh=1").json(), {"cached": False})

    def test_bad_returns(self) -> None:
        """Anything but None or {"data", "context"} is a 500 naming the file."""
        response = self.get("/odd/x", query={"give": "text"})
        self.assertEqual(response.code, 500)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)
        self.assertIn(
            "middleware() in odd/middleware.py returned str;", self.log_text()
        )
        self.assertEqual(self.get("/odd/x", query={"give": "dict"}).code, 500)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)
        self.assertIn("returned a dict with keys ['user'];", self.log_text())
        # None is fine.
        self.assertEqual(self.get("/odd/x").text(), "handler")


class ContextKeysTests(RoutesTestCase):
    routes = {
        "middleware.py": """
            def middleware(data, ctx):
                return {"context": {data["key"]: 1}}
        """,
        "x.py": "def GET(data, ctx):\n    return getattr(ctx, data['key'])\n",
    }

    def test_reserved_names(self) -> None:
        """Middleware cannot replace ``ctx``'s own attributes."""
        for key in ("response", "dependencies", "request_id", "sleep"):
            with self.subTest(key=key):
                self.assertEqual(self.get("/x", query={"key": key}).code, 500)
        self.flushLoggedErrors(ValueError)
        self.assertIn(
            "context key 'response' would replace ctx.response", self.log_text()
        )
        self.assertEqual(self.get("/x", query={"key": "user"}).text(), "1")


ORDER_SOURCE = """
    from {up}_order import ORDER

    def before_run(data, ctx):
        ORDER.append("before {name}")

    def after_run(result, ctx):
        ORDER.append(("after {name}", result if not isinstance(result, Exception)
                      else type(result).__name__))
"""
MIDDLEWARE_SOURCE = """
    from {up}_order import ORDER

    def middleware(data, ctx):
        ORDER.append("middleware {name}")
"""


class InterceptorOrderTests(RoutesTestCase):
    """The order of one request across three folder levels."""

    routes = {
        "_order.py": "ORDER = []\n",
        "interceptors.py": ORDER_SOURCE.format(up=".", name="root"),
        "middleware.py": MIDDLEWARE_SOURCE.format(up=".", name="root"),
        "a/interceptors.py": ORDER_SOURCE.format(up="..", name="a"),
        "a/middleware.py": MIDDLEWARE_SOURCE.format(up="..", name="a"),
        "a/b/interceptors.py": ORDER_SOURCE.format(up="...", name="b"),
        "a/b/middleware.py": MIDDLEWARE_SOURCE.format(up="...", name="b"),
        "a/b/[id].py": """
            from ..._order import ORDER

            def GET(data, ctx):
                ORDER.append("handler")
                return "result"
        """,
    }

    def test_order(self) -> None:
        self.assertEqual(self.get("/a/b/1").text(), "result")
        self.assertEqual(
            self.module("_order.py").ORDER,
            [
                "before root",
                "before a",
                "before b",
                "middleware root",
                "middleware a",
                "middleware b",
                "handler",
                ("after b", "result"),
                ("after a", "result"),
                ("after root", "result"),
            ],
        )


class AfterRunTests(RoutesTestCase):
    """``after_run``: replacing, recovering, re-raising; streams and SSE."""

    routes = {
        "interceptors.py": """
            SEEN = []

            def after_run(result, ctx):
                SEEN.append(result)
                mode = ctx.request.query.get("mode")
                if mode == "wrap":
                    return {"wrapped": result}
                if mode == "recover" and isinstance(result, Exception):
                    return {"recovered": str(result)}
                if mode == "raise":
                    raise LookupError("from after_run")
        """,
        "value.py": "def GET(data, ctx):\n    return 'v'\n",
        "boom.py": """
            from oxian_tw import HttpError

            def GET(data, ctx):
                raise HttpError(409, "Conflict here")
        """,
        "stream.py": """
            async def GET(data, ctx):
                await ctx.response.stream("chunk ")
                return "ignored"
        """,
        "events.py": """
            def GET(data, ctx):
                sse = ctx.response.sse(keep_open=False)
                sse.send("one")
                return "ignored"
        """,
    }

    def test_replaces(self) -> None:
        self.assertEqual(
            self.get("/value", query={"mode": "wrap"}).json(), {"wrapped": "v"}
        )
        self.assertEqual(self.get("/value").text(), "v")

    def test_sees_the_exception(self) -> None:
        response = self.get("/boom")
        self.assertEqual(
            (response.code, response.json()["error"]["message"]), (409, "Conflict here")
        )
        seen = self.module("interceptors.py").SEEN
        self.assertEqual(type(seen[-1]).__name__, "HttpError")

    def test_recovers(self) -> None:
        response = self.get("/boom", query={"mode": "recover"})
        self.assertEqual(
            (response.code, response.json()), (200, {"recovered": "Conflict here"})
        )

    def test_raising_replaces_the_error(self) -> None:
        response = self.get("/boom", query={"mode": "raise"})
        self.assertEqual(response.code, 500)
        self.assertEqual(len(self.flushLoggedErrors(LookupError)), 1)

    def test_stream_unchanged(self) -> None:
        """
        For a stream, after_run runs when the handler returns; its return
        changes nothing.
        """
        response = self.get("/stream", query={"mode": "wrap"})
        self.client.flush()
        self.assertEqual(self.module("interceptors.py").SEEN, ["ignored"])
        self.assertTrue(response.complete)
        self.assertEqual(response.text(), "chunk ")

    def test_sse_unchanged(self) -> None:
        response = self.get("/events", query={"mode": "wrap"})
        self.client.flush()
        self.assertEqual(self.module("interceptors.py").SEEN, ["ignored"])
        self.assertEqual([e.data for e in response.events()], ["one"])
        self.assertTrue(response.complete)


class StoppedByMiddlewareTests(RoutesTestCase):
    """What ``after_run`` sees when middleware stopped the request."""

    routes = {
        "interceptors.py": """
            SEEN = []

            def after_run(result, ctx):
                SEEN.append(type(result).__name__)
        """,
        "middleware.py": """
            from oxian_tw import HttpError

            def middleware(data, ctx):
                if data.get("deny"):
                    raise HttpError(403)
                if data.get("send"):
                    ctx.response.send("sent")
        """,
        "x.py": "def GET(data, ctx):\n    return 'handler'\n",
    }

    def test_outcomes(self) -> None:
        self.assertEqual(self.get("/x", query={"deny": "1"}).code, 403)
        self.assertEqual(self.get("/x", query={"send": "1"}).text(), "sent")
        self.assertEqual(self.get("/x").text(), "handler")
        self.assertEqual(
            self.module("interceptors.py").SEEN, ["HttpError", "NoneType", "str"]
        )


class PreflightSkipsPipelineTests(RoutesTestCase):
    """Automatic OPTIONS (and 404/405) never run middleware."""

    routes = {
        "middleware.py": """
            from oxian_tw import HttpError

            CALLS = []

            def middleware(data, ctx):
                CALLS.append(ctx.request.method)
                raise HttpError(401)
        """,
        "x.py": "def GET(data, ctx):\n    return 1\n",
    }

    def test_options_404_405(self) -> None:
        self.assertEqual(self.successResultOf(self.client.options("/x")).code, 204)
        self.assertEqual(self.get("/nope").code, 404)
        self.assertEqual(self.successResultOf(self.client.post("/x")).code, 405)
        self.assertEqual(self.get("/x").code, 401)
        self.assertEqual(self.module("middleware.py").CALLS, ["GET"])


class StartupErrorTests(SynchronousTestCase):
    """Broken pipeline files fail startup with the file (and line)."""

    def app_error(self, files: dict[str, str]) -> str:
        root = make_tree(
            self.mktemp(), {"index.py": "def GET(d, c):\n    return 1\n", **files}
        )
        return str(self.assertRaises(RouteTreeError, OxianApp, root, reactor=Clock()))

    def test_syntax_errors(self) -> None:
        for name in ("middleware.py", "a/dependencies.py", "a/b/interceptors.py"):
            with self.subTest(name=name):
                message = self.app_error({name: "x = 1\ndef broken(:\n"})
                self.assertIn(f"{name}:2", message)

    def test_import_error(self) -> None:
        message = self.app_error({"middleware.py": "import no_such_module_here\n"})
        self.assertIn("middleware.py:1", message)
        self.assertIn("ModuleNotFoundError", message)

    def test_missing_function(self) -> None:
        cases = {
            "dependencies.py": "dependencies.py: defines no dependencies(parent) "
            "function",
            "middleware.py": "middleware.py: defines no middleware(data, ctx) function",
            "interceptors.py": "interceptors.py: defines no before_run(data, ctx) or "
            "after_run(result_or_error, ctx) function",
        }
        for name, expected in cases.items():
            with self.subTest(name=name):
                self.assertIn(expected, self.app_error({name: "VALUE = {}\n"}))

    def test_private_folders_ignored(self) -> None:
        """Pipeline files in private folders are helpers, never loaded as pipeline."""
        root = make_tree(
            self.mktemp(),
            {
                "index.py": "def GET(d, c):\n    return 1\n",
                "_lib/middleware.py": "def broken(:\n",
                ".hidden/dependencies.py": "def broken(:\n",
            },
        )
        client = TestClient(OxianApp(root, reactor=Clock()))
        self.assertEqual(self.successResultOf(client.get("/")).code, 200)
