"""
Stream tokens (SPEC §16, `oxian_tw.tokens`): signing and verifying with
PyJWT, keys rotating, the middleware helpers (``Authorization: Bearer`` or
``?token=``; 401 for a bad one), the token's channel patterns bounding the
request's channels, a stream ending with ``event: expired`` at the token's
expiry (on the app's clock), and the token never in the access log.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from oxian_tw import tokens
from oxian_tw.tokens import InvalidToken, KeyRing, NoTokenKey

from .helpers import RoutesTestCase, make_tree

NOW = 1_800_000_000.0
K1, K2, OLD, NEW = (name.encode() * 8 for name in ("key1", "key2", "old1", "new1"))

ROUTES = {
    "middleware.py": """
        from oxian_tw.tokens import optional as middleware
    """,
    "me.py": """
        def GET(data, ctx):
            user = getattr(ctx, "user", None)
            return {"sub": None if user is None else user["sub"]}
    """,
    "events.py": """
        def GET(data, ctx):
            ctx.response.sse(channels=data["c"].split(","))
    """,
    "private/middleware.py": """
        from oxian_tw.tokens import require as middleware
    """,
    "private/me.py": """
        def GET(data, ctx):
            return {"sub": ctx.user["sub"]}
    """,
}


class KeyRingTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        ring = KeyRing([K1])
        token = ring.sign("ann", ["room:*"], ttl=60, now=NOW)
        claims = ring.verify(token, now=NOW + 59)
        self.assertEqual(
            (claims["sub"], claims["channels"], claims["exp"]),
            ("ann", ["room:*"], int(NOW + 60)),
        )

    def test_expired(self) -> None:
        ring = KeyRing([K1])
        token = ring.sign("ann", ttl=60, now=NOW)
        error = self.assertRaises(InvalidToken, ring.verify, token, NOW + 60)
        self.assertEqual(error.status_code, 401)

    def test_forged_and_unknown(self) -> None:
        ring = KeyRing([K1])
        token = ring.sign("ann", now=NOW)
        head, payload, signature = token.split(".")
        forged = f"{head}.{payload}.{signature[:-4]}AAAA"
        self.assertRaises(InvalidToken, ring.verify, forged, NOW)
        self.assertRaises(InvalidToken, ring.verify, "not.a.token", NOW)
        other = KeyRing([K2]).sign("ann", now=NOW)
        self.assertRaises(InvalidToken, ring.verify, other, NOW)

    def test_rotation(self) -> None:
        """The first key signs; every key verifies."""
        old = KeyRing([OLD]).sign("ann", now=NOW)
        ring = KeyRing.from_text(f"{NEW.decode()}\n{OLD.decode()}\n")
        self.assertEqual(ring.verify(old, NOW)["sub"], "ann")
        fresh = ring.sign("bob", now=NOW)
        self.assertEqual(KeyRing([NEW]).verify(fresh, NOW)["sub"], "bob")
        self.assertRaises(InvalidToken, KeyRing([OLD]).verify, fresh, NOW)

    def test_short_keys_refused(self) -> None:
        error = self.assertRaises(ValueError, KeyRing, [b"short"])
        self.assertIn("at least 32 bytes", str(error))

    def test_no_key_names_the_option(self) -> None:
        tokens.configure(None)
        self.addCleanup(tokens.configure, None)
        self.patch(os, "environ", {})
        error = self.assertRaises(NoTokenKey, tokens.sign, "ann")
        self.assertIn("--token-key-file", str(error))

    def test_patterns(self) -> None:
        self.assertTrue(tokens.matches(["room:*"], "room:1"))
        self.assertTrue(tokens.matches(["*"], "a:b:c"))
        self.assertFalse(tokens.matches(["room:*"], "rooms"))
        self.assertFalse(tokens.matches(["room.1"], "roomx1"))
        self.assertFalse(tokens.matches([], "room:1"))


class MiddlewareTests(RoutesTestCase):
    routes = ROUTES

    def setUp(self) -> None:
        key_file = os.path.join(make_tree(self.mktemp(), {}), "keys")
        with open(key_file, "w") as f:
            f.write("secret-one-" + "x" * 32 + "\n")
        self.config = {"token-key-file": key_file, "ping": 0}
        self.addCleanup(tokens.configure, None)
        super().setUp()
        self.clock.advance(NOW)

    def token(self, ttl: float = 300, channels: tuple[str, ...] = ("news",)) -> str:
        return tokens.sign("ann", channels, ttl=ttl, now=self.clock.seconds())

    def test_optional(self) -> None:
        self.assertEqual(self.get("/me").json(), {"sub": None})
        by_query = self.get("/me", query={"token": self.token()})
        self.assertEqual(by_query.json(), {"sub": "ann"})
        by_header = self.get("/me", headers={"Authorization": f"Bearer {self.token()}"})
        self.assertEqual(by_header.json(), {"sub": "ann"})

    def test_bad_token_is_401_with_either(self) -> None:
        for path in ("/me", "/private/me"):
            response = self.get(path, query={"token": "forged"})
            self.assertEqual(response.code, 401)
            self.assertEqual(response.json()["error"]["code"], "invalid_token")
        expired = self.token(ttl=10)
        self.clock.advance(10)
        self.assertEqual(self.get("/me", query={"token": expired}).code, 401)

    def test_require(self) -> None:
        self.assertEqual(self.get("/private/me").code, 401)
        self.assertEqual(
            self.get("/private/me", query={"token": self.token()}).json(),
            {"sub": "ann"},
        )

    def test_channels_outside_the_token(self) -> None:
        """No channels.py: the token's patterns still bound its channels."""
        token = self.token(channels=("room:*",))
        allowed = self.get("/events", query={"c": "room:1", "token": token})
        self.assertEqual(allowed.code, 200)
        denied = self.get("/events", query={"c": "room:1,news", "token": token})
        self.assertEqual(denied.code, 403)
        self.assertEqual(denied.json()["error"]["details"]["channel"], "news")

    def test_expired_mid_stream(self) -> None:
        """At the token's expiry: ``event: expired``, then the end."""
        response = self.get("/events", query={"c": "news", "token": self.token(ttl=30)})
        self.client.advance(29)
        self.app.hub.publish("news", "before")
        self.client.flush()
        self.assertEqual([e.data for e in response.events()], ["before"])
        self.client.advance(1)
        last = response.events()[-1]
        self.assertEqual((last.event, last.data), ("expired", '{"reason":"token"}'))
        self.successResultOf(response.finished())

    def test_never_logged(self) -> None:
        token = self.token()
        self.get("/me", query={"token": token})
        lines = [
            e["line"]
            for e in self.logged
            if e.get("log_namespace") == "oxian_tw.access"
        ]
        self.assertEqual(len(lines), 1)
        self.assertNotIn(token, lines[0])
        self.assertIn("token=REDACTED", lines[0])
