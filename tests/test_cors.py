"""
CORS (``--cors-*``, SPEC §8): headers on every response, errors, streams
and SSE included; preflights answered by the automatic ``OPTIONS``.
"""

from __future__ import annotations

from typing import Any

from .helpers import RoutesTestCase

APP = "https://app.example"
OTHER = "https://evil.example"

ROUTES = {
    "index.py": "def GET(data, ctx):\n    return {'ok': True}\n",
    "echo.py": "def POST(data, ctx):\n    return data\n",
    "stream.py": """
        async def GET(data, ctx):
            await ctx.response.stream("a")
            await ctx.response.stream("b")
    """,
    "events.py": """
        def GET(data, ctx):
            sse = ctx.response.sse(keep_open=False)
            sse.send("hello")
    """,
    "private/middleware.py": """
        from oxian_tw import HttpError

        def middleware(data, ctx):
            if ctx.request.headers.get("authorization") != "Bearer demo-token":
                raise HttpError(401)
    """,
    "private/data.py": "def GET(data, ctx):\n    return 'secret'\n",
    "custom.py": """
        def GET(data, ctx):
            return 1

        def OPTIONS(data, ctx):
            ctx.response.headers({"X-Own": "yes"})
    """,
}


def cors_names(response: Any) -> list[str]:
    return sorted(n for n in response.headers if n.startswith("access-control-"))


class ListedOriginTests(RoutesTestCase):
    """One listed origin, no credentials."""

    routes = ROUTES
    config = {
        "cors-origin": [APP],
        "cors-expose-headers": ["X-Request-Id"],
        "body-limit": 16,
    }

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Origin": APP, **kwargs.pop("headers", {})}
        return self.successResultOf(
            self.client.request(method, path, headers=headers, **kwargs)
        )

    def assertAllowed(self, response: Any) -> None:
        self.assertEqual(response.headers.get("access-control-allow-origin"), APP)
        self.assertEqual(
            response.headers.get("access-control-expose-headers"), "X-Request-Id"
        )
        self.assertIn("Origin", response.headers.get("vary"))
        self.assertNotIn("access-control-allow-credentials", response.headers)

    def test_plain_response(self) -> None:
        response = self.request("GET", "/")
        self.assertEqual(response.code, 200)
        self.assertAllowed(response)

    def test_errors(self) -> None:
        """404, 405, 401 from middleware, 400 for bad JSON, 400 for a bad path."""
        cases = [
            ("GET", "/nope", {}, 404),
            ("DELETE", "/", {}, 405),
            ("GET", "/private/data", {}, 401),
            (
                "POST",
                "/echo",
                {"body": b"{", "headers": {"Content-Type": "application/json"}},
                400,
            ),
            ("GET", "/%FF", {}, 400),
        ]
        for method, path, kwargs, status in cases:
            with self.subTest(path=path, method=method):
                response = self.request(method, path, **kwargs)
                self.assertEqual(response.code, status)
                self.assertAllowed(response)

    def test_early_413(self) -> None:
        """The site's own 413 (refused from Content-Length) carries them too."""
        response = self.request("POST", "/echo", json={"much": "x" * 100})
        self.assertEqual(response.code, 413)
        self.assertAllowed(response)

    def test_stream(self) -> None:
        response = self.request("GET", "/stream")
        self.client.flush()
        self.assertEqual(response.text(), "ab")
        self.assertAllowed(response)

    def test_sse(self) -> None:
        response = self.request("GET", "/events")
        self.client.flush()
        self.assertEqual([e.data for e in response.events()], ["hello"])
        self.assertTrue(
            response.headers.get("content-type").startswith("text/event-stream")
        )
        self.assertAllowed(response)

    def test_unlisted_origin(self) -> None:
        """No CORS headers for an unlisted origin; caches are told it matters."""
        for path in ("/", "/nope", "/events"):
            with self.subTest(path=path):
                response = self.request("GET", path, headers={"Origin": OTHER})
                self.assertEqual(cors_names(response), [])
                self.assertEqual(response.headers.get("vary"), "Origin")

    def test_no_origin(self) -> None:
        response = self.successResultOf(self.client.get("/"))
        self.assertEqual(cors_names(response), [])

    def test_preflight(self) -> None:
        """The automatic OPTIONS: 204, the route's methods, the asked headers."""
        response = self.request(
            "OPTIONS",
            "/private/data",
            headers={
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization, x-trace",
            },
        )
        self.assertEqual(response.code, 204)
        self.assertEqual(response.headers.get("allow"), "GET, HEAD, OPTIONS")
        self.assertEqual(
            response.headers.get("access-control-allow-methods"), "GET, HEAD, OPTIONS"
        )
        self.assertEqual(
            response.headers.get("access-control-allow-headers"),
            "authorization, x-trace",
        )
        self.assertEqual(
            response.headers.get("vary"), "Origin, Access-Control-Request-Headers"
        )
        self.assertEqual(response.headers.get("access-control-allow-origin"), APP)
        self.assertNotIn("access-control-max-age", response.headers)

    def test_preflight_unlisted(self) -> None:
        response = self.request(
            "OPTIONS",
            "/",
            headers={"Origin": OTHER, "Access-Control-Request-Method": "GET"},
        )
        self.assertEqual(response.code, 204)
        self.assertEqual(cors_names(response), [])

    def test_own_options_handler(self) -> None:
        """A route's own OPTIONS answers preflights, with the CORS headers."""
        response = self.request(
            "OPTIONS", "/custom", headers={"Access-Control-Request-Method": "GET"}
        )
        self.assertEqual(response.headers.get("x-own"), "yes")
        self.assertEqual(
            response.headers.get("access-control-allow-methods"), "GET, HEAD, OPTIONS"
        )
        self.assertAllowed(response)


class ConfiguredPreflightTests(RoutesTestCase):
    routes = ROUTES
    config = {
        "cors-origin": [APP, "http://localhost:3000"],
        "cors-methods": "GET,POST",
        "cors-headers": ["Authorization", "Content-Type"],
        "cors-max-age": 600,
    }

    def test_configured_values(self) -> None:
        response = self.successResultOf(
            self.client.options(
                "/",
                headers={
                    "Origin": "http://localhost:3000",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "x-anything",
                },
            )
        )
        self.assertEqual(
            response.headers.get("access-control-allow-origin"),
            "http://localhost:3000",
        )
        self.assertEqual(
            response.headers.get("access-control-allow-methods"), "GET, POST"
        )
        self.assertEqual(
            response.headers.get("access-control-allow-headers"),
            "Authorization, Content-Type",
        )
        self.assertEqual(response.headers.get("access-control-max-age"), "600")
        self.assertEqual(response.headers.get("vary"), "Origin")


class AnyOriginTests(RoutesTestCase):
    routes = ROUTES
    config = {"cors-origin": "*"}

    def test_star(self) -> None:
        """``*`` without credentials: ``*`` for every origin, no ``Vary``."""
        for origin in (APP, OTHER):
            response = self.successResultOf(
                self.client.get("/events", headers={"Origin": origin})
            )
            self.assertEqual(response.headers.get("access-control-allow-origin"), "*")
            self.assertNotIn("vary", response.headers)
            self.assertNotIn("access-control-allow-credentials", response.headers)


class CredentialsTests(RoutesTestCase):
    routes = ROUTES
    config = {"cors-origin": ["*"], "cors-credentials": True}

    def test_echo_never_star(self) -> None:
        """With credentials the origin is echoed, with ``Vary: Origin``."""
        for path in ("/", "/nope", "/stream", "/events"):
            with self.subTest(path=path):
                response = self.successResultOf(
                    self.client.get(path, headers={"Origin": OTHER})
                )
                self.assertEqual(
                    response.headers.get("access-control-allow-origin"), OTHER
                )
                self.assertEqual(
                    response.headers.get("access-control-allow-credentials"), "true"
                )
                self.assertEqual(response.headers.get("vary"), "Origin")


class OffTests(RoutesTestCase):
    routes = ROUTES

    def test_no_headers_by_default(self) -> None:
        response = self.successResultOf(
            self.client.options(
                "/", headers={"Origin": APP, "Access-Control-Request-Method": "GET"}
            )
        )
        self.assertEqual(cors_names(response), [])
        self.assertNotIn("vary", response.headers)
