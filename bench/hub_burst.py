"""
The in-memory hub's burst fan-out, this checkout beside another revision
(issue 29: "within 10% of today's"). A script that prints numbers, not a
test.

    python bench/hub_burst.py [--against REV] [--repeat 3]

Each run (a fresh process on CPU 0, this checkout and ``REV`` alternating):
1,000 SSE subscribers of one channel through the real app path (an
``OxianApp`` site on ``StringTransport`` connections, a ``Clock`` for the
reactor, ``bench/hub_routes``), then bursts of 100 publishes of ~256 B;
the median time of 9 bursts. Printed: the median (min-max) over
``--repeat`` runs for each, and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

from _common import TOP, checkout, pinned, remove_checkout

RUN = r"""
import sys, time, gc
top = sys.argv[1]
sys.path.insert(0, top)
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.internet.address import IPv4Address
from oxian_tw import OxianApp

clock = Clock()
app = OxianApp(top + "/bench/hub_routes", reactor=clock, config={"access-log": "off"})
site = app.site()
address = IPv4Address("TCP", "127.0.0.1", 5)
transports = []
for _ in range(1000):
    transport = StringTransport(peerAddress=address)
    protocol = site.buildProtocol(address)
    protocol.makeConnection(transport)
    protocol.dataReceived(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
    transports.append(transport)
clock.advance(0)
pad = "x" * 214

def burst():
    for transport in transports:
        transport.clear()
    start = time.perf_counter()
    for n in range(100):
        app.hub.publish("bench", {"seq": n, "t": 0, "pad": pad}, "message")
    clock.advance(0)
    return time.perf_counter() - start

burst()
gc.collect()
times = sorted(burst() for _ in range(9))
print(times[4] * 1000)
"""


def run(top: str) -> float:
    out = subprocess.run(
        pinned(0, [sys.executable, "-c", RUN, top]),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--against", default="79ab23b")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    older = checkout(args.against)
    results: dict[str, list[float]] = {"this checkout": [], args.against: []}
    try:
        for _ in range(args.repeat):
            results["this checkout"].append(run(TOP))
            results[args.against].append(run(older))
    finally:
        remove_checkout(older)
    print("hub burst: 1,000 subscribers of one channel, 100 events of ~256 B, ms")
    for name, values in results.items():
        print(
            f"{name:<20}{statistics.median(values):8.1f} "
            f"({min(values):.1f}-{max(values):.1f})"
        )
    ratio = statistics.median(results["this checkout"]) / statistics.median(
        results[args.against]
    )
    print(f"ratio: {ratio:.2f}x")


if __name__ == "__main__":
    main()
