# -*- test-case-name: tests.test_files,tests.test_app -*-
"""
``ctx.response.send_file()``: a file as the response, read block by block
at the client's pace; the pure rules (paths, validators, ranges) are in
`oxian_tw._files`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed

from ._context import header_value
from ._files import UNSATISFIABLE, byte_range, not_modified, resolve

if TYPE_CHECKING:
    from ._exchange import Exchange


def send_file(
    exchange: Exchange,
    path: str | os.PathLike[str],
    root: str | os.PathLike[str],
    headers: Mapping[str, Any] | None,
) -> Deferred[None]:
    """``ctx.response.send_file(...)`` (documented there)."""
    if exchange.settled:
        raise RuntimeError("the response was already sent")
    info = resolve(root, path)
    request = exchange.request
    exchange.set_headers({"Content-Type": info.content_type, **(headers or {})})
    exchange.set_headers(
        {
            "ETag": info.etag,
            "Last-Modified": info.last_modified,
            "Accept-Ranges": "bytes",
        }
    )
    if not_modified(
        info,
        header_value(request, b"if-none-match"),
        header_value(request, b"if-modified-since"),
    ):
        request.setResponseCode(304)
        exchange.commit(None)
        return succeed(None)
    span = byte_range(
        info, header_value(request, b"range"), header_value(request, b"if-range")
    )
    if span is UNSATISFIABLE:
        exchange.refuse(
            416, "Range Not Satisfiable", {"Content-Range": f"bytes */{info.size}"}
        )
        return succeed(None)
    first, last = (0, info.size - 1) if span is None else span
    if span is not None:
        request.setResponseCode(206)
        exchange.set_headers({"Content-Range": f"bytes {first}-{last}/{info.size}"})
    exchange.set_headers({"Content-Length": str(last - first + 1)})
    stream = exchange.start_stream(
        keep_open=True, buffer_limit=exchange.app.settings.buffer_limit
    )
    if stream.closed:
        return succeed(None)
    file = open(info.path, "rb")  # the reader closes it
    file.seek(first)
    d = stream._pull_file(file, last - first + 1)
    d.addCallback(lambda _: stream.close())
    return d
