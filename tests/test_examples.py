"""
The streaming examples under ``examples/routes`` (the files docs/streaming.md
shows), through the test client on a deterministic clock.
"""

from __future__ import annotations

import json
import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw import OxianApp
from oxian_tw.testing import TestClient

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples")


class StreamingExampleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.client = TestClient(
            OxianApp(os.path.join(EXAMPLES, "routes"), reactor=Clock())
        )

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
