"""
Every example of the seed page (``examples/routes``), end to end: the real
``twistd -n oxian --routes examples/routes`` on an ephemeral 127.0.0.1 port,
over real sockets, with its real sqlite3 database.
"""

from __future__ import annotations

import atexit
import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
import xml.etree.ElementTree as ElementTree
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from oxian_tw.sse import Event

from .helpers import TwistdProcess, assert_clean_exit
from .sse_clients import SseClient, pump

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples")
BIG = 50 * 1024 * 1024


class _Files:
    """The uploads (with a 50 MiB file) and database, made once per run."""

    work = ""
    big_sha256 = ""

    @classmethod
    def get(cls) -> type[_Files]:
        if not cls.work:
            cls.work = tempfile.mkdtemp(prefix="oxian-examples-")
            atexit.register(shutil.rmtree, cls.work, True)
            uploads = os.path.join(cls.work, "uploads")
            os.makedirs(uploads)
            shutil.copy(os.path.join(EXAMPLES, "uploads", "hello.txt"), uploads)
            digest = hashlib.sha256()
            with open(os.path.join(uploads, "big.bin"), "wb") as f:
                for _ in range(BIG // (1024 * 1024)):
                    block = os.urandom(1024 * 1024)
                    digest.update(block)
                    f.write(block)
            cls.big_sha256 = digest.hexdigest()
        return cls


class ExamplesEndToEndTests(SynchronousTestCase):
    """Each test starts the example app and stops it with SIGTERM."""

    def setUp(self) -> None:
        files = _Files.get()
        self.big_sha256 = files.big_sha256
        self.server = TwistdProcess(
            "--routes",
            os.path.join(EXAMPLES, "routes"),
            env={
                "OXIAN_EXAMPLES_DB": os.path.join(files.work, "examples.sqlite3"),
                "OXIAN_EXAMPLES_UPLOADS": os.path.join(files.work, "uploads"),
            },
        )
        self.addCleanup(assert_clean_exit, self, self.server)

    def request(
        self, method: str, path: str, **kwargs: Any
    ) -> tuple[int, dict[str, str], bytes]:
        return self.server.request(method, path, **kwargs)

    def events(
        self, path: str, count: int, **kwargs: Any
    ) -> tuple[SseClient, list[Event]]:
        """The head and the first ``count`` events of ``path``."""
        client = SseClient(self.server.port, path, **kwargs)
        self.addCleanup(client.close)
        pump(
            [client],
            lambda: (
                client.eof
                or (client.status is not None and len(client.events) >= count)
            ),
            timeout=30,
        )
        self.assertEqual(client.status, 200)
        return client, client.events

    def test_page(self) -> None:
        """``/`` is the HTML demo page using the SSE endpoints."""
        status, headers, body = self.request("GET", "/")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "text/html; charset=utf-8")
        for needle in (
            b'<option value="general">',
            b"/rooms/${room}/events",
            b"/rooms/${room}/who",
            b"/tokens/rooms/",
            b"/live/dashboard",
            b"/live/stocks/",
            b"/download/",
        ):
            self.assertIn(needle, body)

    def test_relay(self) -> None:
        """``/relay`` pipes this app's own ``/events``, fetched with treq."""
        client, events = self.events("/relay", 2)
        self.assertEqual(
            client.headers["content-type"], "text/event-stream; charset=utf-8"
        )
        self.assertEqual([e.event for e in events[:2]], ["counter", "counter"])
        self.assertEqual([json.loads(e.data)["count"] for e in events[:2]], [1, 2])

    def test_stream(self) -> None:
        status, headers, body = self.request("GET", "/stream")
        self.assertEqual((status, body), (200, b"Hello streaming world!"))
        self.assertEqual(headers["transfer-encoding"], "chunked")

    def test_data_stream(self) -> None:
        """``data-stream?count=3`` is valid JSON with three items."""
        status, _, body = self.request("GET", "/data-stream?count=3")
        items = json.loads(body)["items"]
        self.assertEqual([item["id"] for item in items], [1, 2, 3])
        self.assertTrue(all(isinstance(item["timestamp"], int) for item in items))

    def test_download(self) -> None:
        """A 50 MiB file arrives whole (SHA-256); traversal is refused."""
        status, headers, body = self.request("GET", "/download/big.bin")
        self.assertEqual((status, len(body)), (200, BIG))
        self.assertEqual(headers["content-length"], str(BIG))
        self.assertEqual(hashlib.sha256(body).hexdigest(), self.big_sha256)
        self.assertEqual(
            headers["content-disposition"], 'attachment; filename="big.bin"'
        )
        for path in ("/download/..%2f..%2fetc%2fpasswd", "/download/..%2Fhello.txt"):
            with self.subTest(path=path):
                status, headers, body = self.request("GET", path)
                self.assertIn(status, (403, 404))
                self.assertIn("error", json.loads(body))
        self.assertEqual(self.request("GET", "/download/nope.txt")[0], 404)

    def test_users_csv(self) -> None:
        """``export/users.csv``: a header and 10,000 users from sqlite."""
        status, headers, body = self.request("GET", "/export/users.csv")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "text/csv; charset=utf-8")
        lines = body.decode("utf-8").splitlines()
        self.assertEqual(len(lines), 10_001)
        self.assertEqual(lines[0], "id,name,email,created_at")
        rows = list(csv.reader(io.StringIO(body.decode("utf-8"))))
        self.assertEqual([int(r[0]) for r in rows[1:]], list(range(1, 10_001)))

    def test_users_by_id(self) -> None:
        status, _, body = self.request("GET", "/users/42")
        self.assertEqual((status, json.loads(body)["id"]), (200, 42))
        self.assertEqual(self.request("GET", "/users/999999")[0], 404)

    def test_events(self) -> None:
        """``/events``: counter events with ids, retry 1000."""
        _, events = self.events("/events", 2)
        self.assertEqual([e.event for e in events[:2]], ["counter", "counter"])
        self.assertEqual([e.id for e in events[:2]], ["msg-1", "msg-2"])
        self.assertEqual(json.loads(events[1].data)["count"], 2)

    def test_chat(self) -> None:
        """A message POSTed to ``chat/send`` reaches ``chat/events`` listeners."""
        listener, events = self.events("/chat/events?room=e2e", 1)
        self.assertEqual(events[0].event, "welcome")
        status, _, body = self.request(
            "POST",
            "/chat/send",
            body=json.dumps(
                {"room": "e2e", "username": "ada", "message": "hi"}
            ).encode(),
            headers={"Content-Type": "application/json"},
        )
        self.assertEqual(status, 200)
        message_id = json.loads(body)["messageId"]
        pump([listener], lambda: len(listener.events) >= 2, timeout=10)
        event = listener.events[1]
        self.assertEqual((event.event, event.id), ("message", message_id))
        self.assertEqual(json.loads(event.data)["message"], "hi")
        status, _, body = self.request(
            "POST",
            "/chat/send",
            body=b'{"username": "ada"}',
            headers={"Content-Type": "application/json"},
        )
        self.assertEqual(status, 400)
        self.assertEqual(
            json.loads(body)["error"]["message"], "Message and username required"
        )

    def test_dashboard_metrics(self) -> None:
        """Real metrics of the server process, one event per interval."""
        _, events = self.events("/dashboard/metrics?interval=0.2", 3)
        for event in events[:3]:
            metrics = json.loads(event.data)
            self.assertEqual(event.event, "metrics")
            self.assertTrue(event.id.startswith("metrics-"))
            self.assertEqual(metrics["pid"], self.server.process.pid)
            self.assertGreater(metrics["memory_rss_bytes"], 10 * 1024 * 1024)
            self.assertGreaterEqual(metrics["open_streams"], 1)
            self.assertGreaterEqual(metrics["cpu_percent"], 0)

    def test_stocks(self) -> None:
        _, events = self.events("/stocks/AAPL/stream?interval=0.2", 3)
        prices = [json.loads(e.data) for e in events[:3]]
        self.assertEqual({p["symbol"] for p in prices}, {"AAPL"})
        self.assertEqual([e.event for e in events[:3]], ["price-update"] * 3)
        self.assertEqual(prices[0]["change"], 0)
        self.assertAlmostEqual(
            prices[1]["change"], round(prices[1]["price"] - prices[0]["price"], 2)
        )

    def test_unknown_stock_is_400_before_any_event(self) -> None:
        status, headers, body = self.request("GET", "/stocks/NOPE/stream")
        self.assertEqual(status, 400)
        self.assertEqual(headers["content-type"], "application/json; charset=utf-8")
        self.assertEqual(
            json.loads(body), {"error": {"message": "Invalid stock symbol"}}
        )

    def test_feed(self) -> None:
        """The same feed in json, csv and xml; other formats are a 422."""
        _, headers, body = self.request("GET", "/feed?count=5")
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual([i["id"] for i in json.loads(body)["feed"]], [1, 2, 3, 4, 5])
        _, headers, body = self.request("GET", "/feed?format=csv&count=5")
        rows = list(csv.reader(io.StringIO(body.decode("utf-8"))))
        self.assertEqual(rows[0], ["id", "title", "content", "timestamp"])
        self.assertEqual(len(rows), 6)
        self.assertIn(",", rows[1][2])
        _, headers, body = self.request("GET", "/feed?format=xml&count=5")
        self.assertTrue(headers["content-type"].startswith("application/xml"))
        root = ElementTree.fromstring(body)
        self.assertEqual(len(root.findall("item")), 5)
        self.assertIn("<with markup", root.find("item/content").text)
        self.assertEqual(self.request("GET", "/feed?format=yaml")[0], 422)

    def test_protected_stream(self) -> None:
        """401 without or with a bad token; the demo token streams."""
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            with self.subTest(headers=headers):
                status, response_headers, body = self.request(
                    "GET", "/protected/stream", headers=headers
                )
                self.assertEqual(status, 401)
                self.assertEqual(response_headers["www-authenticate"], "Bearer")
                self.assertIn("error", json.loads(body))
        _, events = self.events(
            "/protected/stream", 1, headers={"Authorization": "Bearer demo-token"}
        )
        self.assertEqual(events[0].event, "authenticated")
        self.assertEqual(json.loads(events[0].data)["message"], "Welcome Demo User")

    def test_stream_with_errors(self) -> None:
        """Data, then an error event, then a clean end."""
        client, _ = self.events("/stream-with-errors?interval=0.2&fail_on=3", 3)
        pump([client], lambda: client.complete or client.eof, timeout=10)
        self.assertEqual([e.event for e in client.events], ["data", "data", "error"])
        self.assertEqual(
            json.loads(client.events[2].data)["error"], "Data processing failed"
        )
        self.assertTrue(client.complete)

    def test_big_data(self) -> None:
        """Every user as one JSON document, and a filtered query."""
        status, _, body = self.request("GET", "/big-data")
        results = json.loads(body)["results"]
        self.assertEqual(len(results), 10_000)
        self.assertEqual(results[0]["id"], 1)
        _, _, body = self.request("GET", "/big-data?name=Ada")
        names = {r["name"].split()[0] for r in json.loads(body)["results"]}
        self.assertEqual(names, {"Ada"})

    def test_limited_events(self) -> None:
        _, events = self.events("/limited-events", 1)
        self.assertEqual(events[0].event, "joined")

    def test_client_events_replaces(self) -> None:
        """A second stream for one client id ends the first."""
        first, _ = self.events("/client-events?clientId=tab-1", 1)
        second, events = self.events("/client-events?clientId=tab-1", 1)
        pump([first], lambda: first.complete or first.eof, timeout=10)
        self.assertTrue(first.complete)
        self.assertEqual(json.loads(events[0].data), {"clientId": "tab-1"})
        self.assertFalse(second.eof)

    def test_bad_parameters(self) -> None:
        """Bad parameters are JSON 4xx, never a 500 or a spinning timer."""
        for path, status in (
            ("/dashboard/metrics?interval=0", 422),
            ("/dashboard/metrics?interval=soon", 422),
            ("/stocks/AAPL/stream?interval=-1", 422),
            ("/protected/stream?interval=0", 401),
            ("/stream-with-errors?interval=0", 422),
            ("/stream-with-errors?fail_on=x", 422),
            ("/feed?count=many", 422),
            ("/data-stream?count=100000", 422),
            ("/export/numbers.csv?rows=abc", 422),
            ("/users/99999999999999999999999", 404),
            ("/users/%C2%B2", 404),
        ):
            with self.subTest(path=path):
                got, headers, body = self.request("GET", path)
                self.assertEqual(got, status)
                self.assertEqual(
                    headers["content-type"], "application/json; charset=utf-8"
                )
                self.assertIn("message", json.loads(body)["error"])

    def test_rooms_replay_after_reconnect(self) -> None:
        """
        The hub chat: a message reaches the room; a client that left comes
        back with its last id and gets exactly what it missed, then live.
        A newcomer gets the room's recent messages first (history); who is
        in the room is known (presence), with join/leave events.
        """

        def messages(client: SseClient) -> list[Event]:
            return [e for e in client.events if e.event == "message"]

        listener, _ = self.events("/rooms/e2e/events?user=grace", 1)
        self.assertEqual(listener.events[0].event, "join")
        self.assertEqual(json.loads(listener.events[0].data)["info"], {"user": "grace"})

        def send(text: str) -> str:
            status, _, body = self.request(
                "POST",
                "/rooms/e2e/send",
                body=json.dumps({"username": "ada", "message": text}).encode(),
                headers={"Content-Type": "application/json"},
            )
            self.assertEqual(status, 200)
            return str(json.loads(body)["messageId"])

        def who() -> list[str]:
            status, _, body = self.request("GET", "/rooms/e2e/who")
            self.assertEqual(status, 200)
            return [entry["user"] for entry in json.loads(body)["users"]]

        self.assertEqual(who(), ["grace"])
        first = send("one")
        pump([listener], lambda: len(messages(listener)) >= 1, timeout=10)
        self.assertEqual(messages(listener)[0].id, first)
        listener.abort()
        pump([], lambda: who() == [], timeout=10)
        missed = [send("two"), send("three")]
        again, _ = self.events(
            "/rooms/e2e/events?user=grace", 3, headers={"Last-Event-ID": first}
        )
        self.assertEqual([e.id for e in messages(again)], missed)
        newcomer, _ = self.events("/rooms/e2e/events?user=linus", 4)
        self.assertEqual(
            [json.loads(e.data)["message"] for e in messages(newcomer)],
            ["one", "two", "three"],
        )
        self.assertEqual(who(), ["grace", "linus"])
        live = send("four")
        pump([again], lambda: len(messages(again)) >= 3, timeout=10)
        self.assertEqual(messages(again)[2].id, live)
        self.assertEqual(
            [json.loads(e.data)["message"] for e in messages(again)],
            ["two", "three", "four"],
        )
        self.assertEqual(
            [
                (e.event, json.loads(e.data)["info"]["user"])
                for e in again.events
                if e.event != "message"
            ],
            [("join", "grace"), ("join", "linus")],
        )
        status, _, _ = self.request("GET", "/rooms/" + "x" * 65 + "/events")
        self.assertEqual(status, 400)
        status, headers, body = self.request("GET", "/metrics")
        self.assertEqual(
            headers["content-type"], "text/plain; version=0.0.4; charset=utf-8"
        )
        text = body.decode()
        self.assertIn("oxian_hub_published_total 4.0\n", text)
        self.assertIn("oxian_hub_replayed_total 5.0\n", text)
