"""
Compressed streams (SPEC §17, issue 32): bytes on the wire and the
server's CPU per delivered event, compressed (zstd, br, gzip) and not, for
the example app's demo feeds and a 1,000-subscriber hub fan-out. A script
that prints numbers, not a test.

    python bench/compression.py [--repeat 5]

Each measurement is a fresh process on CPU 0 running the real app path (an
``OxianApp`` site on ``StringTransport`` connections, a ``Clock`` for the
reactor, ``--compress``, the clients' ``Accept-Encoding`` one coding or
none):

- **dashboard**: 100 clients of the example's ``/dashboard/metrics?interval=1``
  (this process's CPU, memory and streams, as the demo page shows them),
  60 ticks of the clock;
- **chat**: 100 clients of the example's ``/chat/events``, 200 messages
  posted to ``/chat/send`` (each one a broadcast to every client);
- **fan-out**: 1,000 hub subscribers of one channel (``bench/hub_routes``),
  100 chat-shaped messages published in one turn (as the hub burst bench).

Bytes are what the transports received after the response heads; CPU is
``time.process_time`` over the events, per event delivered to one client.
Rounds alternate the codings; median (min-max) of ``--repeat``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from _common import TOP, pinned

RUN = r"""
import gc, json, os, sys, tempfile, time
top, workload, coding = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, top)
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.internet.address import IPv4Address
from oxian_tw import OxianApp

clock = Clock()
config = {"access-log": "off", "compress": True}
accept = b"" if coding == "none" else b"Accept-Encoding: " + coding.encode() + b"\r\n"
address = IPv4Address("TCP", "127.0.0.1", 5)
if workload == "fan-out":
    app = OxianApp(top + "/bench/hub_routes", reactor=clock, config=config)
    clients, path = 1000, b"/events"
else:
    app = OxianApp(
        top + "/examples/routes",
        reactor=clock,
        config=config,
        dependencies={"database_path": os.path.join(tempfile.mkdtemp(), "db")},
    )
    clients = 100
    path = (
        b"/dashboard/metrics?interval=1" if workload == "dashboard" else b"/chat/events"
    )
site = app.site()
transports = []
for _ in range(clients):
    transport = StringTransport(peerAddress=address)
    protocol = site.buildProtocol(address)
    protocol.makeConnection(transport)
    protocol.dataReceived(
        b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + accept + b"\r\n"
    )
    transports.append(transport)
clock.advance(0)
heads = [t.value() for t in transports]
for t in transports:
    t.clear()
gc.collect()

def post(body):
    transport = StringTransport(peerAddress=address)
    protocol = site.buildProtocol(address)
    protocol.makeConnection(transport)
    protocol.dataReceived(
        b"POST /chat/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )

message = "Did anyone see the latest numbers on the dashboard? Looks like load is up"
started = time.process_time()
if workload == "dashboard":
    events = 60
    for _ in range(events):
        clock.advance(1)
elif workload == "chat":
    events = 200
    for n in range(events):
        said = {"room": "general", "username": f"u{n % 7}", "message": f"{message} {n}"}
        post(json.dumps(said).encode())
        clock.advance(0)
else:
    events = 100
    for n in range(events):
        said = {
            "id": f"{n:032x}",
            "username": f"user{n % 7}",
            "message": f"{message} {n}",
            "timestamp": 1765000000000 + n,
        }
        app.hub.publish("bench", said, "message")
    clock.advance(0)
cpu = time.process_time() - started
received = sum(len(t.value()) for t in transports)
encoding = b"content-encoding: " + coding.encode() if coding != "none" else None
if encoding is not None:
    assert all(encoding in h.lower() for h in heads), heads[0]
deliveries = events * clients
print(json.dumps({"bytes": received / deliveries, "cpu_us": cpu / deliveries * 1e6}))
"""

CODINGS = ("none", "gzip", "br", "zstd")
WORKLOADS = ("dashboard", "chat", "fan-out")


def run(workload: str, coding: str) -> dict[str, float]:
    out = subprocess.run(
        pinned(0, [sys.executable, "-c", RUN, TOP, workload, coding]),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def spread(values: list[float], digits: int) -> str:
    return (
        f"{statistics.median(values):.{digits}f} "
        f"({min(values):.{digits}f}-{max(values):.{digits}f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _ in range(args.repeat):
        for workload in WORKLOADS:
            for coding in CODINGS:
                results.setdefault((workload, coding), []).append(run(workload, coding))
    print(
        "compression: bytes on the wire and server CPU per event delivered to "
        f"one client; median (min-max) of {args.repeat}"
    )
    print(f"{'':<22}{'bytes/event':>22}{'× none':>8}{'CPU µs/event':>22}{'× none':>8}")
    for workload in WORKLOADS:
        base = results[(workload, "none")]
        base_bytes = statistics.median(r["bytes"] for r in base)
        base_cpu = statistics.median(r["cpu_us"] for r in base)
        for coding in CODINGS:
            rows = results[(workload, coding)]
            size = [r["bytes"] for r in rows]
            cpu = [r["cpu_us"] for r in rows]
            print(
                f"{workload + ', ' + coding:<22}{spread(size, 1):>22}"
                f"{statistics.median(size) / base_bytes:>7.2f}x"
                f"{spread(cpu, 2):>22}{statistics.median(cpu) / base_cpu:>7.2f}x"
            )


if __name__ == "__main__":
    main()
