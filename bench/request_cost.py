"""
What one plain ``GET /hello`` costs oxian_tw's own code, in CPU
instructions: the app's site fed the request as wrk sends it (through the
connection, the parser, the request, the route and the response, to a
transport that keeps nothing), 50 connections in turn and the end of a
reactor turn every 50 requests (a ``Clock``), counted by valgrind's
callgrind. Instructions do not move with the machine's load, so small
changes show where ``bench/plain_get.py``'s rates, on a shared machine,
cannot; what it leaves out is the reactor and the kernel (``epoll``,
``recv``, ``send``), which plain_get.py measures. Needs valgrind (``apt-get
install valgrind``). A script that prints numbers, not a test.

    python bench/request_cost.py [--requests 2000] [--against REV]
                                 [--workload request|stream]

``--workload stream`` counts instead a new connection opening an SSE
stream that sends one event and stays open (``bench/sse.py``'s ``ready``
mode, in-process): the connection rate's share of our code.

Each row runs the program twice, with ``N`` requests and with none after
the same 1,000 warm-up requests; the difference over ``N`` is the cost of a
request. Rows: llhttp and Twisted's parser (``--http-parser``), each with
the access log off and with the default ``combined`` log written to a null
stream once per turn (`StreamSink`, as ``twistd -n oxian`` does). With
``--against REV``, the same rows from a checkout of ``REV`` (its default
parser where it has no ``--http-parser``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

from _common import TOP, checkout, remove_checkout

PROGRAM = """
import io, sys
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from oxian_tw import OxianApp

routes, parser, log, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


class Sink:
    disconnecting = False
    connected = True
    TLS = False

    def write(self, data): pass
    def writeSequence(self, seq): pass
    def getPeer(self): return IPv4Address("TCP", "127.0.0.1", 50000)
    def getHost(self): return IPv4Address("TCP", "127.0.0.1", 8080)
    def registerProducer(self, producer, streaming): pass
    def unregisterProducer(self): pass
    def pauseProducing(self): pass
    def resumeProducing(self): pass
    def stopProducing(self): pass
    def setTcpNoDelay(self, enabled): pass
    def loseConnection(self): self.disconnecting = True


class Null(io.TextIOBase):
    def write(self, text): return len(text)


clock = Clock()
clock.advance(1764633600)
config = {"access-log": log}
if parser != "default":
    config["http-parser"] = parser
app = OxianApp(routes, reactor=clock, config=config)
if log != "off":
    app._log_requests_to(Null())
site = app.site()
# What wrk sends.
raw = b"GET /hello HTTP/1.1\\r\\nHost: 127.0.0.1:8080\\r\\n\\r\\n"
if sys.argv[5] in ("stream", "hub-stream"):
    # A new connection for each, opening a stream that sends one event and
    # stays open (kept, as a client holding it would).
    path = b"/ready" if sys.argv[5] == "stream" else b"/hub-ready"
    raw = b"GET " + path + b" HTTP/1.1\\r\\nHost: 127.0.0.1:8080\\r\\n\\r\\n"
    kept = []
    for i in range(1000 + count):
        connection = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        connection.makeConnection(Sink())
        connection.dataReceived(raw)
        kept.append(connection)
        if i % 50 == 49:
            clock.advance(0)
    sys.exit(0)
connections = []
for _ in range(50):
    connection = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
    connection.makeConnection(Sink())
    connections.append(connection)
for i in range(1000 + count):
    connections[i % 50].dataReceived(raw)
    if i % 50 == 49:
        clock.advance(0)
"""

ROUTE = """
def GET(data, ctx):
    return "hello"
"""

#: The idle routes of bench/sse.py's ``ready`` mode: the seed's, the hub's.
READY = """
def GET(data, ctx):
    ctx.response.sse().send("ready", event="ready")
"""
HUB_READY = """
def GET(data, ctx):
    ctx.response.sse(channels=["idle"]).send("ready", event="ready")
"""


def instructions(
    top: str, routes: str, parser: str, log: str, count: int, workload: str
) -> int:
    """Instructions callgrind counts for the program with ``count`` requests."""
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            PROGRAM,
            routes,
            parser,
            log,
            str(count),
            workload,
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": top},
        # ``python -c`` puts its working directory first on the path, before
        # PYTHONPATH: run in ``top``, or the caller's checkout is measured.
        cwd=top,
    ).stderr
    match = re.search(r"refs:\s+([\d,]+)", out)
    if match is None:
        raise SystemExit(f"callgrind said no count:\n{out}")
    return int(match.group(1).replace(",", ""))


def per_request(
    top: str, routes: str, parser: str, log: str, count: int, workload: str
) -> float:
    base = instructions(top, routes, parser, log, 0, workload)
    return (instructions(top, routes, parser, log, count, workload) - base) / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--against")
    parser.add_argument(
        "--workload",
        choices=("request", "stream", "hub-stream"),
        default="request",
        help="request: GET /hello on 50 kept-alive connections; stream: a new "
        "connection for each, opening an SSE stream that sends one event; "
        "hub-stream: the same stream subscribed to a hub channel",
    )
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        raise SystemExit("needs valgrind (apt-get install valgrind)")
    routes = tempfile.mkdtemp(prefix="oxian-cost-")
    with open(os.path.join(routes, "hello.py"), "w") as f:
        f.write(ROUTE)
    with open(os.path.join(routes, "ready.py"), "w") as f:
        f.write(READY)
    with open(os.path.join(routes, "hub-ready.py"), "w") as f:
        f.write(HUB_READY)
    rows = [
        (f"{parser}, log {log}", TOP, parser, log)
        for parser in ("llhttp", "twisted")
        for log in ("off", "combined")
    ]
    older = checkout(args.against) if args.against else None
    try:
        if older is not None:
            with open(os.path.join(older, "oxian_tw", "_config.py")) as f:
                has_choice = "http-parser" in f.read()
            for parser in ("llhttp", "twisted") if has_choice else ("default",):
                for log in ("off", "combined"):
                    rows.append(
                        (f"{parser}, log {log} @ {args.against}", older, parser, log)
                    )
        what = {
            "request": "GET /hello",
            "stream": "connection + stream",
            "hub-stream": "connection + hub stream",
        }[args.workload]
        print(
            f"{what} in-process, instructions each (callgrind, "
            f"{args.requests} after 1,000)"
        )
        for name, top, parser_name, log in rows:
            cost = per_request(
                top, routes, parser_name, log, args.requests, args.workload
            )
            print(f"{name:<40}{cost:>12,.0f}")
    finally:
        shutil.rmtree(routes, ignore_errors=True)
        if older is not None:
            remove_checkout(older)


if __name__ == "__main__":
    main()
