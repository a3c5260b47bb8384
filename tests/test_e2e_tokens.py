"""
Stream tokens and the channel policy end to end (SPEC §16), against a real
``twistd -n oxian --token-key-file ...``: forged, expired and wrong-key
tokens are 401; a guessed private channel is 403 with none of its history;
a token expiring mid-stream ends it with ``expired``, and the client,
reconnecting with a fresh token and its ``Last-Event-ID``, reads every
event once, in order; no token ever reaches the log.
"""

from __future__ import annotations

import json
import os
import time

from twisted.trial.unittest import SynchronousTestCase

from oxian_tw.tokens import KeyRing

from .helpers import TwistdProcess, make_tree
from .sse_clients import SseClient, pump

KEY = "k" * 40
ROUTES = {
    "middleware.py": """
        from oxian_tw.tokens import optional as middleware
    """,
    "channels.py": """
        def authorize(ctx, channel, action):
            if channel.startswith("private:"):
                return getattr(ctx, "user", None) is not None
            return True
    """,
    "events.py": """
        def GET(data, ctx):
            ctx.response.sse(channels=[data["c"]], history=int(data.get("h", 0)))
    """,
    "publish.py": """
        async def POST(data, ctx):
            return {"id": await ctx.app.hub.publish(data["c"], data["n"])}
    """,
}


class TokenEndToEndTests(SynchronousTestCase):
    def setUp(self) -> None:
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        keys = os.path.join(work, "keys")
        with open(keys, "w") as f:
            f.write(KEY + "\n")
        self.ring = KeyRing.from_file(keys)
        root = make_tree(os.path.join(work, "routes"), ROUTES)
        self.server = TwistdProcess("--routes", root, "--token-key-file", keys)
        self.addCleanup(self.server.stop)
        self.issued: list[str] = []

    def sign(self, ttl: float, channels: tuple[str, ...] = ("private:*",)) -> str:
        token = self.ring.sign("ann", channels, ttl=ttl)
        self.issued.append(token)
        return token

    def publish(self, channel: str, n: int) -> str:
        status, _, body = self.server.request(
            "POST",
            "/publish",
            json.dumps({"c": channel, "n": n}).encode(),
            {"Content-Type": "application/json"},
        )
        self.assertEqual(status, 200, body)
        event_id: str = json.loads(body)["id"]
        return event_id

    def test_bad_tokens_are_401(self) -> None:
        good = self.sign(60)
        head, payload, signature = good.split(".")
        expired = self.ring.sign("ann", ["private:*"], ttl=-1)
        other = KeyRing([b"o" * 40]).sign("ann", ["private:*"], ttl=60)
        for token in (f"{head}.{payload}.{signature[:-3]}AAA", expired, other, "junk"):
            status, _, body = self.server.request(
                "GET", f"/events?c=private:x&token={token}"
            )
            self.assertEqual(status, 401, token)
            self.assertEqual(json.loads(body)["error"]["code"], "invalid_token")

    def test_guessed_channel_is_403_without_its_history(self) -> None:
        self.publish("private:plans", 4242)
        status, _, body = self.server.request("GET", "/events?c=private:plans&h=10")
        self.assertEqual(status, 403)
        self.assertNotIn(b"4242", body)
        self.assertEqual(json.loads(body)["error"]["code"], "forbidden_channel")

    def test_expiring_mid_stream_loses_nothing(self) -> None:
        channel = "private:feed"
        sent: list[int] = []
        received: list[int] = []
        seen_ids: list[str] = []
        expiries = 0
        last: str | None = None
        deadline = time.monotonic() + 30
        n = 0
        while expiries < 2 and time.monotonic() < deadline:
            headers = {} if last is None else {"Last-Event-ID": last}
            client = SseClient(
                self.server.port,
                f"/events?c={channel}&token={self.sign(1.5)}",
                headers=headers,
            )
            pump([client], lambda c=client: c.status is not None, 10)
            self.assertEqual(client.status, 200)
            while time.monotonic() < deadline:
                self.publish(channel, n)
                sent.append(n)
                n += 1
                if _read_for(client, 0.05):
                    break
            client.sock.close()
            for event in client.events:
                if event.event == "expired":
                    self.assertEqual(json.loads(event.data), {"reason": "token"})
                    expiries += 1
                    break
                received.append(json.loads(event.data))
                assert event.id is not None
                seen_ids.append(event.id)
                last = event.id
        self.assertEqual(expiries, 2)
        # The rest, after the last expiry, with a fresh token.
        client = SseClient(
            self.server.port,
            f"/events?c={channel}&token={self.sign(30)}",
            headers={"Last-Event-ID": last or ""},
        )
        pump([client], lambda: len(received) + len(client.events) >= len(sent), 10)
        received += [json.loads(e.data) for e in client.events]
        client.sock.close()
        self.assertEqual(received, sent)
        self.assertEqual(len(seen_ids), len(set(seen_ids)))
        log = self.server.output()
        for token in self.issued:
            self.assertNotIn(token, log)


def _read_for(client: SseClient, seconds: float) -> bool:
    """Read what arrives for ``seconds``; whether ``expired`` came."""

    def expired() -> bool:
        return any(e.event == "expired" for e in client.events)

    try:
        pump([client], expired, seconds)
    except AssertionError:
        pass
    return expired()
