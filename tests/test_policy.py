"""
The channel policy (SPEC §16) in memory, on a ``Clock``: ``channels.py``
folders, every level must allow, ``403 forbidden_channel`` before any
header (and nothing of the channel's history), a denied ``subscribe()``
on an open stream, ``ctx.hub`` checked and ``app.hub`` trusted, runs,
async ``authorize``, decisions kept for the ttl, and a failing
``authorize`` denying.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from oxian_tw._policy import Decisions

from .helpers import RoutesTestCase

ROUTES = {
    "calls.py": """
        CALLS = []
        REVOKED = set()
    """,
    "channels.py": """
        from .calls import CALLS, REVOKED

        def authorize(ctx, channel, action):
            CALLS.append(("root", channel, action))
            if channel == "broken":
                raise RuntimeError("a bug in the policy")
            if channel in REVOKED:
                return False
            return not channel.startswith("secret")
    """,
    "events.py": """
        def GET(data, ctx):
            ctx.response.sse(channels=data["c"].split(","), history=10)
    """,
    "more.py": """
        async def GET(data, ctx):
            sse = ctx.response.sse(channels=["news"])
            try:
                await sse.subscribe(data["c"])
            except Exception as error:
                sse.send({"refused": error.status_code}, event="refused")
    """,
    "publish.py": """
        async def POST(data, ctx):
            return {"id": await ctx.hub.publish(data["c"], "hello")}
    """,
    "presence.py": """
        async def GET(data, ctx):
            return await ctx.hub.presence(data["c"])
    """,
    "runs.py": """
        async def POST(data, ctx):
            async def nothing():
                yield "x"
            handle = await ctx.runs.start(data["key"], lambda: nothing())
            return {"status": handle.status}

        def GET(data, ctx):
            ctx.response.sse(run=data["key"])
    """,
    "members/channels.py": """
        async def authorize(ctx, channel, action):
            member = ctx.request.query.get("member") == "yes"
            return channel.startswith("room:") and member
    """,
    "members/events.py": """
        def GET(data, ctx):
            ctx.response.sse(channels=[data["c"]])
    """,
}


class PolicyTests(RoutesTestCase):
    routes = ROUTES
    config = {"channel-policy-ttl": 60}

    def calls(self) -> list[tuple[str, str, str]]:
        calls: list[tuple[str, str, str]] = self.module("calls.py").CALLS
        return calls

    def test_allowed(self) -> None:
        self.app.hub.publish("news", "earlier")
        response = self.get("/events", query={"c": "news"})
        self.client.flush()
        self.assertEqual(response.code, 200)
        self.assertEqual([e.data for e in response.events()], ["earlier"])

    def test_denied_before_any_header(self) -> None:
        """A denied channel: 403 JSON naming it, none of its history."""
        self.app.hub.publish("secret-room", "the plans")
        response = self.get("/events", query={"c": "news,secret-room"})
        self.client.flush()
        self.assertEqual(response.code, 403)
        self.assertEqual(
            response.json()["error"],
            {
                "message": "Not allowed to subscribe on channel 'secret-room'",
                "code": "forbidden_channel",
                "details": {"channel": "secret-room", "action": "subscribe"},
            },
        )
        self.assertNotIn("the plans", response.text())
        self.assertEqual(len(self.app.streams), 0)

    def test_every_level_must_allow(self) -> None:
        self.assertEqual(self.get("/members/events", query={"c": "room:1"}).code, 403)
        # (Decisions are kept per subject or address and channel, not per
        # query: another room.)
        allowed = self.get("/members/events", query={"c": "room:2", "member": "yes"})
        self.assertEqual(allowed.code, 200)
        self.assertEqual(
            self.get("/members/events", query={"c": "lobby", "member": "yes"}).code,
            403,
        )

    def test_subscribe_on_an_open_stream(self) -> None:
        """Denied: its Deferred fails with the 403; the stream stays open."""
        response = self.get("/more", query={"c": "secret-x"})
        self.client.flush()
        self.assertEqual(response.code, 200)
        (event,) = response.events()
        self.assertEqual((event.event, event.data), ("refused", '{"refused":403}'))
        self.app.hub.publish("news", "still here")
        self.client.flush()
        self.assertEqual(response.events()[-1].data, "still here")

    def test_publish_and_presence_checked(self) -> None:
        published = self.successResultOf(
            self.client.post("/publish", query={"c": "secret"})
        )
        self.assertEqual(published.code, 403)
        self.assertEqual(self.get("/presence", query={"c": "secret"}).code, 403)
        self.assertEqual(
            self.successResultOf(
                self.client.post("/publish", query={"c": "news"})
            ).code,
            200,
        )

    def test_app_hub_is_trusted(self) -> None:
        self.successResultOf(self.app.hub.publish("secret", "from a timer"))
        self.assertEqual(self.calls(), [])

    def test_runs_checked(self) -> None:
        started = self.successResultOf(
            self.client.post("/runs", query={"key": "secret-run"})
        )
        self.assertEqual(
            started.code, 200
        )  # "run:secret-run" does not start with "secret"
        self.assertIn(("root", "run:secret-run", "publish"), self.calls())
        self.client.flush()
        self.assertEqual(self.get("/runs", query={"key": "secret-run"}).code, 200)
        self.assertIn(("root", "run:secret-run", "subscribe"), self.calls())

    def test_decisions_kept_for_the_ttl(self) -> None:
        for _ in range(3):
            self.get("/events", query={"c": "news"})
        self.assertEqual(self.calls().count(("root", "news", "subscribe")), 1)
        self.client.advance(61)
        self.get("/events", query={"c": "news"})
        self.assertEqual(self.calls().count(("root", "news", "subscribe")), 2)

    def test_revoked_when_the_decision_expires(self) -> None:
        """
        Every ttl the stream's channels are asked again: still allowed, it
        goes on; a channel now denied gets ``event: revoked`` and is left,
        the stream keeping its other channels.
        """
        response = self.get("/events", query={"c": "news,sport"})
        self.client.advance(60)
        self.app.hub.publish("news", "still allowed")
        self.client.flush()
        self.assertEqual([e.data for e in response.events()], ["still allowed"])
        self.module("calls.py").REVOKED.add("sport")
        self.client.advance(60)
        last = response.events()[-1]
        self.assertEqual((last.event, last.data), ("revoked", '{"channel":"sport"}'))
        self.app.hub.publish("sport", "not for you")
        self.app.hub.publish("news", "still here")
        self.client.flush()
        self.assertEqual(response.events()[-1].data, "still here")
        self.assertNotIn("not for you", [e.data for e in response.events()])
        self.assertFalse(response.complete)
        self.assertEqual(self.app.hub.stats().subscribers, 1)

    def test_failing_authorize_denies(self) -> None:
        self.assertEqual(self.get("/events", query={"c": "broken"}).code, 403)
        self.flushLoggedErrors(RuntimeError)


class DecisionsTests(SynchronousTestCase):
    def test_bounded(self) -> None:
        """Past its size the least recently used decisions go."""
        decisions = Decisions(ttl=60, kept=3)
        for n in range(5):
            decisions.put((n,), True, 0.0)
        self.assertEqual(len(decisions), 3)
        self.assertIsNone(decisions.get((0,), 1.0))
        self.assertTrue(decisions.get((4,), 1.0))

    def test_expiry(self) -> None:
        decisions = Decisions(ttl=10)
        decisions.put(("k",), False, 0.0)
        self.assertIs(decisions.get(("k",), 9.9), False)
        self.assertIsNone(decisions.get(("k",), 10.0))

    def test_ttl_zero_keeps_nothing(self) -> None:
        decisions = Decisions(ttl=0)
        decisions.put(("k",), True, 0.0)
        self.assertEqual(len(decisions), 0)
