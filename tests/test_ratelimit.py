"""
Rate limits (SPEC §16) on a ``Clock``: token buckets (a burst of N, N a
second, the wait until the next token), a table bounded whatever the
number of addresses (a flood of 10,000 distinct addresses leaves a
well-behaved one unaffected), requests and publishes refused with ``429``
JSON and ``Retry-After`` (an SSE request before any header), new
connections refused and closed, the client address behind a trusted proxy.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest
from zope.interface.verify import verifyObject

from oxian_tw._policy import CheckedHub
from oxian_tw._ratelimit import TokenBuckets
from oxian_tw._requestid import TrustedProxies
from oxian_tw.hub import IHub

from .helpers import RoutesTestCase

ROUTES = {
    "hello.py": """
        def GET(data, ctx):
            return "hello"
    """,
    "events.py": """
        def GET(data, ctx):
            ctx.response.sse(channels=["news"])
    """,
    "publish.py": """
        async def POST(data, ctx):
            return {"id": await ctx.hub.publish("news", "x")}
    """,
}


class TokenBucketTests(SynchronousTestCase):
    def test_burst_then_rate(self) -> None:
        clock = Clock()
        buckets = TokenBuckets(3, clock.seconds)
        self.assertEqual([buckets.take("a") for _ in range(3)], [0.0, 0.0, 0.0])
        self.assertAlmostEqual(buckets.take("a"), 1 / 3)
        clock.advance(1 / 3)
        self.assertEqual(buckets.take("a"), 0.0)
        self.assertGreater(buckets.take("a"), 0.0)
        self.assertEqual(buckets.take("b"), 0.0)

    def test_flood_of_addresses(self) -> None:
        """
        10,000 distinct addresses in 127.0.0.0/8: the table stays at its
        bound, and a well-behaved address keeps its rate.
        """
        clock = Clock()
        buckets = TokenBuckets(2, clock.seconds, kept=1000)
        for n in range(10_000):
            buckets.take(f"127.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
            if n % 100 == 0:
                self.assertEqual(buckets.take("10.0.0.1"), 0.0)
                clock.advance(0.5)
        self.assertLessEqual(len(buckets), 1000)


class ClientAddressTests(SynchronousTestCase):
    def request(self, peer: str, **headers: str) -> DummyRequest:
        request = DummyRequest([b""])
        request.client = IPv4Address("TCP", peer, 1234)
        for name, value in headers.items():
            request.requestHeaders.setRawHeaders(name.replace("_", "-"), [value])
        return request

    def test_untrusted_peer(self) -> None:
        proxies = TrustedProxies(["10.0.0.0/8"])
        request = self.request("192.0.2.1", X_Forwarded_For="198.51.100.7")
        self.assertEqual(proxies.client_of(request), "192.0.2.1")

    def test_forwarded_through_proxies(self) -> None:
        proxies = TrustedProxies(["10.0.0.0/8"])
        request = self.request(
            "10.0.0.2", X_Forwarded_For="1.2.3.4, 198.51.100.7, 10.0.0.9"
        )
        self.assertEqual(proxies.client_of(request), "198.51.100.7")
        forwarded = self.request(
            "10.0.0.2", Forwarded='for=192.0.2.60;proto=http, for="[2001:db8::1]:443"'
        )
        self.assertEqual(proxies.client_of(forwarded), "2001:db8::1")


class RequestLimitTests(RoutesTestCase):
    routes = ROUTES
    config = {"rate-requests": 2}

    def test_429_then_again(self) -> None:
        self.assertEqual([self.get("/hello").code for _ in range(2)], [200, 200])
        refused = self.get("/hello")
        self.assertEqual(refused.code, 429)
        self.assertEqual(refused.json()["error"]["code"], "rate_limited")
        self.assertEqual(refused.headers.get("retry-after"), "1")
        self.client.advance(1)
        self.assertEqual(self.get("/hello").code, 200)

    def test_sse_before_any_header(self) -> None:
        self.get("/hello")
        self.get("/hello")
        refused = self.get("/events")
        self.assertEqual(refused.code, 429)
        self.assertEqual(len(self.app.streams), 0)


class PublishLimitTests(RoutesTestCase):
    routes = ROUTES
    config = {"rate-publishes": 1}

    def test_publishes(self) -> None:
        first = self.successResultOf(self.client.post("/publish"))
        self.assertEqual(first.code, 200)
        second = self.successResultOf(self.client.post("/publish"))
        self.assertEqual(second.code, 429)
        self.assertEqual(second.headers.get("retry-after"), "1")

    def test_checked_hub_is_a_hub(self) -> None:
        self.assertTrue(
            verifyObject(IHub, CheckedHub(self.app.hub, None, object(), None))
        )


class ConnectionLimitTests(RoutesTestCase):
    routes = ROUTES
    config = {"rate-connections": 1}

    def test_refused_and_closed(self) -> None:
        site = self.app.site()
        address = IPv4Address("TCP", "192.0.2.5", 40000)
        site.buildProtocol(address)
        refused = site.buildProtocol(address)
        transport = StringTransport()
        refused.makeConnection(transport)
        answer = transport.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 429 "), answer)
        self.assertIn(b"Retry-After: 1", answer)
        self.assertIn(b'{"error":{"message":"Too many connections', answer)
        self.assertTrue(transport.disconnecting)
        other = site.buildProtocol(IPv4Address("TCP", "192.0.2.6", 40000))
        self.assertNotEqual(type(other), type(refused))


class RequestLimitPerSubjectTests(RoutesTestCase):
    """With middleware that sets ``ctx.user`` (a token), per subject."""

    routes = {
        "middleware.py": """
            from oxian_tw.tokens import optional as middleware
        """,
        "hello.py": """
            def GET(data, ctx):
                return "hello"
        """,
    }

    def setUp(self) -> None:
        from oxian_tw import tokens

        self.config = {"rate-requests": 1}
        tokens.configure(tokens.KeyRing([b"s" * 40]))
        self.addCleanup(tokens.configure, None)
        super().setUp()
        self.clock.advance(1_800_000_000)

    def test_per_subject(self) -> None:
        from oxian_tw import tokens

        ann, bob = (
            tokens.sign(name, ttl=60, now=self.clock.seconds())
            for name in ("ann", "bob")
        )
        self.assertEqual(self.get("/hello", query={"token": ann}).code, 200)
        self.assertEqual(self.get("/hello", query={"token": bob}).code, 200)
        self.assertEqual(self.get("/hello", query={"token": ann}).code, 429)
        # Without a token: the address's own bucket.
        self.assertEqual(self.get("/hello").code, 200)
        self.assertEqual(self.get("/hello").code, 429)
