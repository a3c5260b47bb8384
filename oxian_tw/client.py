# -*- test-case-name: tests.test_browser -*-
"""
The browser side: ``oxian-sse.js``, a dependency-free ES module with the
seed's ``SSEClient`` API (``on``, ``connect``, ``close``, its state) plus
what a hub stream needs (JSON data, ``reset`` as a callback, resuming from
a ``lastEventId`` on the first connect, backoff when the browser gives up).

``twistd oxian --client-script /oxian-sse.js`` serves it (off by default);
`script` gives its bytes to serve from a route or copy into a front end.
"""

from __future__ import annotations

import functools
import importlib.resources

__all__ = ("CONTENT_TYPE", "script")

#: The content type to serve `script` with.
CONTENT_TYPE = "text/javascript; charset=utf-8"


@functools.cache
def script() -> bytes:
    """The source of ``oxian-sse.js``."""
    return (
        importlib.resources.files(__package__) / "static" / "oxian-sse.js"
    ).read_bytes()
