"""
The streaming and SSE examples under ``examples/routes`` (the files
docs/streaming.md and docs/sse.md show), through the test client on a
deterministic clock.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw import OxianApp
from oxian_tw.testing import TestClient

from .helpers import own_timers

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples")


def example_app(work: str) -> OxianApp:
    """The example app on a ``Clock``, its sqlite database under ``work``."""
    database = os.path.join(os.path.abspath(work), "examples.sqlite3")
    return OxianApp(
        os.path.join(EXAMPLES, "routes"),
        reactor=Clock(),
        dependencies={"database_path": database},
    )


class StreamingExampleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.client = TestClient(example_app(self.mktemp()))

    def test_stream(self) -> None:
        """``/stream``: three chunks, a second apart, then the end."""
        response = self.successResultOf(self.client.get("/stream"))
        self.assertEqual(response.text(), "Hello ")
        self.client.advance(1)
        self.assertEqual(response.text(), "Hello streaming ")
        self.assertFalse(response.complete)
        self.client.advance(1)
        self.assertEqual(response.text(), "Hello streaming world!")
        self.assertTrue(response.complete)

    def test_data_stream(self) -> None:
        """``/data-stream?count=3``: a JSON document, item by item."""
        response = self.successResultOf(
            self.client.get("/data-stream", query={"count": 3})
        )
        for _ in range(3):
            self.client.advance(0.5)
        document = json.loads(response.body)
        self.assertEqual([item["id"] for item in document["items"]], [1, 2, 3])

    def test_download(self) -> None:
        """``/download/hello.txt``: the upload, as an attachment."""
        response = self.successResultOf(self.client.get("/download/hello.txt"))
        with open(os.path.join(EXAMPLES, "uploads", "hello.txt"), "rb") as f:
            self.assertEqual(response.body, f.read())
        self.assertEqual(
            response.headers.get("content-disposition"),
            'attachment; filename="hello.txt"',
        )

    def test_download_missing(self) -> None:
        """A missing upload is a JSON 404."""
        response = self.successResultOf(self.client.get("/download/nope.txt"))
        self.assertEqual(response.code, 404)
        self.assertEqual(response.json()["error"]["message"], "File not found")

    def test_csv(self) -> None:
        """``/export/numbers.csv``: a header and one row per number."""
        response = self.successResultOf(
            self.client.get("/export/numbers.csv", query={"rows": 3})
        )
        self.assertEqual(response.text(), "n,square,cube\n1,1,1\n2,4,8\n3,9,27\n")
        self.assertEqual(
            response.headers.get("content-type"), "text/csv; charset=utf-8"
        )


class SSEExampleTests(SynchronousTestCase):
    """The SSE examples docs/sse.md shows."""

    def setUp(self) -> None:
        self.app = example_app(self.mktemp())
        self.client = TestClient(self.app)

    def module(self, relative: str) -> Any:
        return self.app._modules.load(relative)

    def test_events(self) -> None:
        """``/events``: ten counter events a second apart, then the end."""
        response = self.successResultOf(self.client.get("/events"))
        self.assertEqual(response.retry, 1000)
        self.client.advance(9)
        self.assertEqual(len(response.events()), 9)
        self.assertFalse(response.complete)
        self.client.advance(1)
        events = response.events()
        self.assertTrue(response.complete)
        self.assertEqual([e.id for e in events], [f"msg-{n}" for n in range(1, 11)])
        self.assertEqual({e.event for e in events}, {"counter"})
        self.assertEqual(json.loads(events[-1].data)["count"], 10)
        self.assertEqual(own_timers(self.client.clock), [])

    def test_events_disconnect(self) -> None:
        """A client that leaves stops the counter's timer."""
        response = self.successResultOf(self.client.get("/events"))
        self.client.advance(3)
        response.disconnect()
        self.assertEqual(own_timers(self.client.clock), [])

    def test_chat(self) -> None:
        """A message reaches the room it was sent to, and only that room."""
        general = self.successResultOf(self.client.get("/chat/events"))
        other = self.successResultOf(
            self.client.get("/chat/events", query={"room": "other"})
        )
        self.assertEqual(general.events()[0].event, "welcome")
        sent = self.successResultOf(
            self.client.post("/chat/send", json={"message": "hi", "username": "ana"})
        )
        self.successResultOf(sent.finished())
        self.assertTrue(sent.json()["success"])
        message = general.events()[-1]
        self.assertEqual(message.event, "message")
        self.assertEqual(json.loads(message.data)["message"], "hi")
        self.assertEqual([e.event for e in other.events()], ["welcome"])
        general.disconnect()
        other.disconnect()
        self.assertEqual(self.module("chat/events.py").clients, set())

    def test_chat_missing_fields(self) -> None:
        """A message without a username is a JSON 400."""
        response = self.successResultOf(
            self.client.post("/chat/send", json={"message": "hi"})
        )
        self.assertEqual(response.code, 400)
        self.successResultOf(response.finished())
        self.assertEqual(
            response.json()["error"]["message"], "Message and username required"
        )

    def test_limited_events(self) -> None:
        """Past ``MAX_CONNECTIONS``: 503 with ``Retry-After``."""
        self.patch(self.module("limited-events.py"), "MAX_CONNECTIONS", 2)
        first = self.successResultOf(self.client.get("/limited-events"))
        self.successResultOf(self.client.get("/limited-events"))
        refused = self.successResultOf(self.client.get("/limited-events"))
        self.assertEqual(refused.code, 503)
        self.assertEqual(refused.headers.get("retry-after"), "5")
        first.disconnect()
        again = self.successResultOf(self.client.get("/limited-events"))
        self.assertEqual(again.code, 200)
        self.assertEqual(json.loads(again.events()[0].data), {"connections": 2})

    def test_client_events(self) -> None:
        """A second stream for a client id closes the first."""
        first = self.successResultOf(
            self.client.get("/client-events", query={"clientId": "a"})
        )
        second = self.successResultOf(
            self.client.get("/client-events", query={"clientId": "a"})
        )
        self.assertTrue(first.complete)
        self.assertFalse(second.complete)
        connections = self.module("client-events.py").connections
        self.assertEqual(list(connections), ["a"])
        second.disconnect()
        self.assertEqual(connections, {})


class BadParameterTests(SynchronousTestCase):
    """
    What the example app is sent by a careless or hostile client is a JSON
    4xx, never a 500: numbers that are not (422, declared), repeated query
    parameters, uploaded files and JSON non-text where text belongs (400).
    """

    def setUp(self) -> None:
        self.client = TestClient(example_app(self.mktemp()))

    def assert_400(self, response: Any, message: str) -> None:
        self.assertEqual(response.code, 400)
        self.successResultOf(response.finished())
        self.assertEqual(response.json(), {"error": {"message": message}})

    def test_declared(self) -> None:
        """
        The routes that read numbers declare them (SPEC §3): a bad value is
        a 422 naming each field, before any stream opens.
        """
        for path, details in [
            ("/export/numbers.csv?rows=abc", [("rows", "not an integer")]),
            ("/export/numbers.csv?rows=-1", [("rows", "must be at least 0")]),
            ("/data-stream?count=100000", [("count", "must be at most 1000")]),
            (
                "/feed?format=a&format=b&count=many",
                [("format", "not one of: json, csv, xml"), ("count", "not an integer")],
            ),
            ("/dashboard/metrics?interval=0", [("interval", "must be at least 0.1")]),
            ("/stocks/AAPL/stream?interval=soon", [("interval", "not a number")]),
            (
                "/stream-with-errors?fail_on=0&interval=nan",
                [
                    ("fail_on", "must be at least 1"),
                    ("interval", "not a finite number"),
                ],
            ),
            (
                "/protected/stream?interval=0",
                [("interval", "must be at least 0.1")],
            ),
        ]:
            with self.subTest(path=path):
                headers = {"Authorization": "Bearer demo-token"}
                response = self.successResultOf(self.client.get(path, headers=headers))
                self.assertEqual(response.code, 422)
                self.successResultOf(response.finished())
                self.assertEqual(
                    response.json(),
                    {
                        "error": {
                            "message": "Invalid parameters",
                            "code": "invalid_params",
                            "details": [
                                {"field": field, "error": error}
                                for field, error in details
                            ],
                        }
                    },
                )

    def test_protected_asks_who_first(self) -> None:
        """A stranger's bad parameter is a 401, not a 422."""
        response = self.successResultOf(self.client.get("/protected/stream?interval=0"))
        self.assertEqual(response.code, 401)

    def test_query(self) -> None:
        for path, message in [
            ("/big-data?name=a&name=b", "name must be a single text value"),
            (
                "/client-events?clientId=a&clientId=b",
                "clientId must be a single text value",
            ),
            ("/chat/events?room=a&room=b", "room must be a single text value"),
        ]:
            with self.subTest(path=path):
                self.assert_400(self.successResultOf(self.client.get(path)), message)

    def test_bodies(self) -> None:
        upload = (
            b"--b\r\nContent-Disposition: form-data; name=message; "
            b'filename="a.txt"\r\nContent-Type: text/plain\r\n\r\nhi\r\n'
            b"--b\r\nContent-Disposition: form-data; name=username\r\n\r\nx\r\n"
            b"--b--\r\n"
        )
        for path in ["/chat/send", "/rooms/lobby/send"]:
            for kwargs, message in [
                ({"json": {"message": {"a": 1}, "username": "x"}}, "message"),
                ({"json": {"message": "hi", "username": ["x"]}}, "username"),
                ({"body": b'{"message": NaN, "username": "x"}'}, None),
                (
                    {
                        "body": upload,
                        "headers": {"Content-Type": "multipart/form-data; boundary=b"},
                    },
                    "message",
                ),
            ]:
                with self.subTest(path=path, kwargs=kwargs):
                    if "body" in kwargs and message is None:
                        kwargs["headers"] = {"Content-Type": "application/json"}
                    response = self.successResultOf(self.client.post(path, **kwargs))
                    if message is None:
                        self.assertEqual(response.code, 400)
                        self.successResultOf(response.finished())
                        self.assertIn("NaN", response.json()["error"]["message"])
                    else:
                        self.assert_400(
                            response, f"{message} must be a single text value"
                        )


class PrivateRoomTests(SynchronousTestCase):
    """
    The example's rooms under its channel policy (``rooms/channels.py``):
    a private room only with a token for it, issued to its members; names
    from the token, never from the query or the body.
    """

    def setUp(self) -> None:
        from oxian_tw import tokens

        self.addCleanup(tokens.configure, None)
        self.client = TestClient(example_app(self.mktemp()))
        self.app = self.client.app
        self.client.app.clock.advance(1_800_000_000)

    def token(self, room: str) -> Any:
        return self.successResultOf(
            self.client.post(
                f"/tokens/rooms/{room}", headers={"Authorization": "Bearer demo-token"}
            )
        )

    def test_guessed_room_gets_nothing(self) -> None:
        self.successResultOf(self.app.hub.publish("room:private-team", "the plans"))
        response = self.successResultOf(self.client.get("/rooms/private-team/events"))
        self.client.flush()
        self.assertEqual(response.code, 403)
        self.assertEqual(response.json()["error"]["code"], "forbidden_channel")
        self.assertNotIn("the plans", response.text())
        who = self.successResultOf(self.client.get("/rooms/private-team/who"))
        self.assertEqual(who.code, 403)

    def test_members_with_a_token(self) -> None:
        self.successResultOf(self.app.hub.publish("room:private-team", "the plans"))
        token = self.token("private-team").json()["token"]
        response = self.successResultOf(
            self.client.get(
                "/rooms/private-team/events", query={"token": token, "user": "mallory"}
            )
        )
        self.client.flush()
        self.assertEqual(response.code, 200)
        self.assertIn("the plans", [e.data for e in response.events()])
        who = self.successResultOf(
            self.client.get("/rooms/private-team/who", query={"token": token})
        )
        self.assertEqual([u["user"] for u in who.json()["users"]], ["Demo User"])
        sent = self.successResultOf(
            self.client.post(
                "/rooms/private-team/send",
                json={"message": "hi", "username": "mallory"},
                headers={"Authorization": f"Bearer {token}"},
            )
        )
        self.assertEqual(sent.code, 200)
        self.client.flush()
        last = json.loads(response.events()[-1].data)
        self.assertEqual((last["username"], last["message"]), ("Demo User", "hi"))

    def test_tokens_only_for_members(self) -> None:
        self.assertEqual(self.token("private-other").code, 403)
        self.assertEqual(
            self.successResultOf(self.client.post("/tokens/rooms/lobby")).code, 401
        )
        # A token for one room opens no other.
        token = self.token("lobby").json()["token"]
        other = self.successResultOf(
            self.client.get("/rooms/private-team/events", query={"token": token})
        )
        self.assertEqual(other.code, 403)

    def test_send_needs_the_token(self) -> None:
        refused = self.successResultOf(
            self.client.post(
                "/rooms/private-team/send", json={"message": "hi", "username": "x"}
            )
        )
        self.assertEqual(refused.code, 403)

    def test_public_rooms_stay_open(self) -> None:
        response = self.successResultOf(
            self.client.get("/rooms/lobby/events", query={"user": "ann"})
        )
        self.assertEqual(response.code, 200)


class SendLimitTests(SynchronousTestCase):
    def test_chat_send_limited(self) -> None:
        """Five messages at once go; the sixth is 429 with Retry-After."""
        client = TestClient(example_app(self.mktemp()))
        codes = [
            self.successResultOf(
                client.post(
                    "/rooms/lobby/send", json={"message": "hi", "username": "ann"}
                )
            ).code
            for _ in range(6)
        ]
        self.assertEqual(codes, [200] * 5 + [429])
        client.advance(1)
        again = self.successResultOf(
            client.post("/rooms/lobby/send", json={"message": "hi", "username": "ann"})
        )
        self.assertEqual(again.code, 200)


class FaviconTests(SynchronousTestCase):
    def test_favicon(self) -> None:
        """The browser's request for /favicon.ico gets an icon, not a 404."""
        client = TestClient(example_app(self.mktemp()))
        response = self.successResultOf(client.get("/favicon.ico"))
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.get("content-type"), "image/svg+xml")
