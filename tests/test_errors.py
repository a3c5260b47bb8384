"""
One JSON error shape (SPEC §3) from every writer: a handler's error through
the response controller, a connection's early answer before its request is
complete (a declared body over the limit), and a whole closing response for
what comes before any request (a head too large). Same content type, same
body for the same status and message, a correct length.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.testing import StringTransport

from oxian_tw._errors import (
    HttpError,
    closing_response,
    error_entity,
    error_response,
)
from oxian_tw._json import JSON_CONTENT_TYPE

from .helpers import RoutesTestCase


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(": ")
        headers[name.lower()] = value
    return int(status.split()[1]), headers, body


class ErrorWriterTests(RoutesTestCase):
    routes = {
        "upload.py": """
            def POST(data, ctx):
                return "ok"
        """,
        "teapot.py": """
            from oxian_tw import HttpError

            def GET(data, ctx):
                raise HttpError(413, "Request body too large")
        """,
    }
    config: dict[str, Any] = {"body-limit": 10}

    def over_the_wire(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        transport = StringTransport()
        channel = self.app.site().buildProtocol(None)
        channel.makeConnection(transport)
        channel.dataReceived(request)
        return parse(transport.value())

    def assertSameError(self, *answers: tuple[int, dict[str, str], bytes]) -> None:
        bodies = {body for _, _, body in answers}
        self.assertEqual(len(bodies), 1, bodies)
        for _, headers, body in answers:
            self.assertEqual(headers["content-type"], JSON_CONTENT_TYPE)
            self.assertEqual(int(headers["content-length"]), len(body))
            self.assertEqual(
                json.loads(body), {"error": {"message": "Request body too large"}}
            )

    def test_every_writer_alike(self) -> None:
        # A handler's error, through the response controller.
        handler = self.over_the_wire(b"GET /teapot HTTP/1.1\r\nHost: x\r\n\r\n")
        # The connection's early answer: a declared body over the limit.
        early = self.over_the_wire(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n"
        )
        # A whole closing response (no request object).
        closing = parse(closing_response(413, "Request body too large"))
        self.assertEqual([a[0] for a in (handler, early, closing)], [413] * 3)
        self.assertSameError(handler, early, closing)
        for _, headers, _ in (early, closing):
            self.assertEqual(headers["connection"], "close")

    def test_entity_matches_error_response(self) -> None:
        """The entity is the body `error_response` gives a handler's error."""
        headers, body = error_entity(404, "no such page")
        status, _, shaped = error_response(HttpError(404, "no such page"))
        self.assertEqual(status, 404)
        self.assertEqual(json.loads(body), shaped)
        self.assertEqual(headers["Content-Length"], str(len(body)))
