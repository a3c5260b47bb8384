"""
``response.send_file``: safe resolution, validators, conditional requests,
ranges and HEAD (SPEC §4.2); the pure helpers first, then through the app.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw import HttpError, OxianApp
from oxian_tw._files import UNSATISFIABLE, FileInfo, byte_range, not_modified, resolve
from oxian_tw.testing import TestClient

from .helpers import make_tree


def info(size: int = 100, mtime: float = 1_000_000.0) -> FileInfo:
    return FileInfo(
        path="/f",
        size=size,
        mtime=mtime,
        etag='"abc"',
        last_modified="Mon, 12 Jan 1970 13:46:40 GMT",
        content_type="text/plain",
    )


class ByteRangeTests(SynchronousTestCase):
    """`byte_range` over a 100-byte file."""

    CASES: list[tuple[str | None, Any]] = [
        (None, None),
        ("bytes=0-9", (0, 9)),
        ("bytes=90-", (90, 99)),
        ("bytes=90-500", (90, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-500", (0, 99)),
        ("bytes=100-", UNSATISFIABLE),
        ("bytes=-0", UNSATISFIABLE),
        ("bytes=5-1", None),
        ("bytes=0-1,5-6", None),
        ("items=0-1", None),
        ("bytes=x-1", None),
        ("bytes=", None),
        ("bytes=-", None),
        # str.isdigit accepts these; int() does not.
        ("bytes=\xb2-", None),
        ("bytes=0-\u2460", None),
        ("bytes=-\xb9", None),
    ]

    def test_cases(self) -> None:
        """Each header gives its range, the whole file, or unsatisfiable."""
        for header, expected in self.CASES:
            with self.subTest(header=header):
                self.assertEqual(byte_range(info(), header, None), expected)

    def test_if_range(self) -> None:
        """A matching ``If-Range`` keeps the range; a stale one drops it."""
        self.assertEqual(byte_range(info(), "bytes=0-1", '"abc"'), (0, 1))
        self.assertIsNone(byte_range(info(), "bytes=0-1", '"old"'))
        self.assertEqual(
            byte_range(info(), "bytes=0-1", "Mon, 12 Jan 1970 13:46:40 GMT"), (0, 1)
        )
        self.assertIsNone(
            byte_range(info(), "bytes=0-1", "Tue, 13 Jan 1970 13:46:40 GMT")
        )

    def test_empty_file(self) -> None:
        """Every range of an empty file is unsatisfiable."""
        self.assertEqual(byte_range(info(size=0), "bytes=0-", None), UNSATISFIABLE)
        self.assertEqual(byte_range(info(size=0), "bytes=-1", None), UNSATISFIABLE)


class NotModifiedTests(SynchronousTestCase):
    """`not_modified`."""

    def test_if_none_match(self) -> None:
        """Tags compare weakly; ``*`` matches; a list is searched."""
        self.assertTrue(not_modified(info(), '"abc"', None))
        self.assertTrue(not_modified(info(), 'W/"abc"', None))
        self.assertTrue(not_modified(info(), '"x", "abc"', None))
        self.assertTrue(not_modified(info(), "*", None))
        self.assertFalse(not_modified(info(), '"x"', None))

    def test_if_modified_since(self) -> None:
        """Used only without ``If-None-Match``; bad dates are ignored."""
        date = "Mon, 12 Jan 1970 13:46:40 GMT"
        self.assertTrue(not_modified(info(), None, date))
        self.assertFalse(not_modified(info(mtime=1_000_001.0), None, date))
        self.assertFalse(not_modified(info(), '"x"', date))
        self.assertFalse(not_modified(info(), None, "yesterday"))


class ResolveTests(SynchronousTestCase):
    """`resolve` keeps every path inside its root."""

    def setUp(self) -> None:
        self.root = make_tree(
            os.path.abspath(self.mktemp()),
            {"public/a.txt": "hello", "secret.txt": "no"},
        )
        self.public = os.path.join(self.root, "public")

    def test_inside(self) -> None:
        """A file inside the root, with its size and type."""
        found = resolve(self.public, "a.txt")
        self.assertEqual(found.size, 5)
        self.assertEqual(found.content_type, "text/plain; charset=utf-8")

    def test_outside(self) -> None:
        """``..``, absolute paths and symlinks out of the root are 403."""
        os.symlink(
            os.path.join(self.root, "secret.txt"), os.path.join(self.public, "link")
        )
        for path in ("../secret.txt", os.path.join(self.root, "secret.txt"), "link"):
            with self.subTest(path=path):
                with self.assertRaises(HttpError) as caught:
                    resolve(self.public, path)
                self.assertEqual(caught.exception.status_code, 403)

    def test_missing(self) -> None:
        """Missing files, directories and NUL bytes are 404."""
        os.mkdir(os.path.join(self.public, "dir"))
        for path in ("nope.txt", "dir", "", "a\0.txt"):
            with self.subTest(path=path):
                with self.assertRaises(HttpError) as caught:
                    resolve(self.public, path)
                self.assertEqual(caught.exception.status_code, 404)


ROUTES = {
    "files/[...path].py": """
        import os

        def GET(data, ctx):
            root = os.path.join(os.path.dirname(__file__), "..", "..", "public")
            return ctx.response.send_file("/".join(data["path"]), root=root)
    """,
    "file.py": """
        import os

        def GET(data, ctx):
            root = os.path.join(os.path.dirname(__file__), "..", "public")
            return ctx.response.send_file(data["path"], root=root)
    """,
    "after_send.py": """
        import os

        def GET(data, ctx):
            ctx.response.send("sent")
            root = os.path.join(os.path.dirname(__file__), "..", "public")
            ctx.response.send_file("big.bin", root=root)
    """,
    "early.py": """
        import os

        def GET(data, ctx):
            root = os.path.join(os.path.dirname(__file__), "..", "public")
            ctx.response.send_file("big.bin", root=root)
    """,
}


class SendFileTests(SynchronousTestCase):
    """``send_file`` through the app."""

    def setUp(self) -> None:
        top = self.mktemp()
        self.root = make_tree(os.path.join(top, "routes"), ROUTES)
        self.public = os.path.join(top, "public")
        os.makedirs(self.public)
        self.content = bytes(range(256)) * 1024
        with open(os.path.join(self.public, "big.bin"), "wb") as f:
            f.write(self.content)
        with open(os.path.join(top, "secret.txt"), "w") as f:
            f.write("secret")
        self.client = TestClient(OxianApp(self.root, reactor=Clock()))

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.successResultOf(self.client.get(path, **kwargs))

    def test_whole_file(self) -> None:
        """200 with the bytes, length, type and validators; not chunked."""
        response = self.get("/files/big.bin")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.body, self.content)
        headers = response.headers
        self.assertEqual(headers.get("content-length"), str(len(self.content)))
        self.assertEqual(headers.get("content-type"), "application/octet-stream")
        self.assertEqual(headers.get("accept-ranges"), "bytes")
        self.assertIsNotNone(headers.get("etag"))
        self.assertIsNotNone(headers.get("last-modified"))
        self.assertIsNone(headers.get("transfer-encoding"))

    def test_not_modified(self) -> None:
        """A matching ``If-None-Match`` is a bodiless 304 with the tag."""
        etag = self.get("/files/big.bin").headers.get("etag")
        response = self.get("/files/big.bin", headers={"If-None-Match": etag})
        self.assertEqual(response.code, 304)
        self.assertEqual(response.body, b"")
        self.assertEqual(response.headers.get("etag"), etag)

    def test_range(self) -> None:
        """A single range is a 206 with ``Content-Range``."""
        response = self.get("/files/big.bin", headers={"Range": "bytes=10-19"})
        self.assertEqual(response.code, 206)
        self.assertEqual(response.body, self.content[10:20])
        self.assertEqual(
            response.headers.get("content-range"), f"bytes 10-19/{len(self.content)}"
        )
        self.assertEqual(response.headers.get("content-length"), "10")

    def test_suffix_range(self) -> None:
        """``bytes=-N`` is the last N bytes."""
        response = self.get("/files/big.bin", headers={"Range": "bytes=-5"})
        self.assertEqual(response.code, 206)
        self.assertEqual(response.body, self.content[-5:])

    def test_unsatisfiable(self) -> None:
        """A range past the end is 416 with ``bytes */size``."""
        response = self.get("/files/big.bin", headers={"Range": "bytes=999999-"})
        self.assertEqual(response.code, 416)
        self.assertEqual(
            response.headers.get("content-range"), f"bytes */{len(self.content)}"
        )
        self.assertEqual(response.json()["error"]["message"], "Range Not Satisfiable")

    def test_head(self) -> None:
        """HEAD: the same head, no body."""
        response = self.successResultOf(self.client.head("/files/big.bin"))
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.get("content-length"), str(len(self.content)))
        self.assertEqual(response.body, b"")

    def test_outside_root(self) -> None:
        """A path out of the root is a JSON 403."""
        response = self.get("/file", query={"path": "../secret.txt"})
        self.assertEqual(response.code, 403)
        self.assertEqual(response.json(), {"error": {"message": "Forbidden"}})

    def test_missing(self) -> None:
        """A missing file is a JSON 404."""
        response = self.get("/files/nope.bin")
        self.assertEqual(response.code, 404)
        self.assertEqual(response.json(), {"error": {"message": "File not found"}})

    def test_outlives_handler(self) -> None:
        """
        The response ends with the file even when the handler returned
        without awaiting it.
        """
        d = self.client.get("/early")
        response = self.successResultOf(d)
        self.assertEqual(response.body, self.content)
        self.assertTrue(response.complete)

    def test_after_send(self) -> None:
        """
        ``send_file`` after ``send`` raises (logged) before touching the
        response, also for a request that would be a bodiless 304.
        """
        etag = self.get("/files/big.bin").headers.get("etag")
        response = self.get("/after_send", headers={"If-None-Match": etag})
        self.assertEqual((response.code, response.body), (200, b"sent"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
