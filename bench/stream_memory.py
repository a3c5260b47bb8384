"""
Where an idle SSE stream's memory goes (issue 33): ``tracemalloc`` over N
streams that each got one event at open (``sse.send("ready",
event="ready")``, as the seed's handlers do), oxian_tw's real app path and
a raw twisted.web resource doing the same, both on ``StringTransport``
connections with a ``Clock`` (the Python objects only: no socket, no
kernel buffers). A script that prints numbers, not a test.

    python bench/stream_memory.py [--streams 2000] [--top 15]

Printed: bytes per stream for each, and oxian_tw's allocation sites that
grew most per stream (file:line, bytes per stream, objects per stream).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from _common import TOP, pinned

RUN = r"""
import gc, sys, tracemalloc
top, which = sys.argv[1], sys.argv[2]
streams, shown = int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, top)
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

address = IPv4Address("TCP", "127.0.0.1", 5)
clock = Clock()
if which == "oxian_tw":
    from oxian_tw import OxianApp

    app = OxianApp(top + "/bench/routes", reactor=clock, config={"access-log": "off"})
    site = app.site()
    request = b"GET /ready HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
else:
    from twisted.web.resource import Resource
    from twisted.web.server import NOT_DONE_YET, Site

    class Ready(Resource):
        isLeaf = True

        def render_GET(self, request):
            request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
            request.setHeader(b"cache-control", b"no-cache")
            request.write(b"event: ready\ndata: ready\n\n")
            return NOT_DONE_YET

    root = Resource()
    root.putChild(b"ready", Ready())
    site = Site(root, reactor=clock)
    request = b"GET /ready HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
held = []

def open_streams(n):
    for _ in range(n):
        transport = StringTransport(peerAddress=address)
        protocol = site.buildProtocol(address)
        protocol.makeConnection(transport)
        protocol.dataReceived(request)
        clock.advance(0)
        # A client that read the event: its bytes leave the transport.
        assert b"ready" in transport.value(), transport.value()[:300]
        transport.clear()
        held.append((transport, protocol))

open_streams(200)  # warm-up: caches, interned strings, first-use tables
gc.collect()
tracemalloc.start(1)
before = tracemalloc.take_snapshot()
open_streams(streams)
clock.advance(0)
gc.collect()
after = tracemalloc.take_snapshot()
total = sum(s.size_diff for s in after.compare_to(before, "filename"))
print(f"{which}: {total / streams:.0f} bytes per stream")
if shown:
    for stat in after.compare_to(before, "lineno")[:shown]:
        frame = stat.traceback[0]
        name = frame.filename.replace(top + "/", "")
        name = name.split("site-packages/")[-1]
        print(
            f"  {stat.size_diff / streams:7.0f} B {stat.count_diff / streams:5.2f} obj"
            f"  {name}:{frame.lineno}"
        )
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    for which in ("twisted.web", "oxian_tw"):
        out = subprocess.run(
            pinned(
                0,
                [
                    sys.executable,
                    "-c",
                    RUN,
                    TOP,
                    which,
                    str(args.streams),
                    str(args.top),
                ],
            ),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        print(out, end="")


if __name__ == "__main__":
    main()
