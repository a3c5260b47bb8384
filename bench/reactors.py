"""
Which reactor ``twistd oxian`` should run on (issue 30): epoll (Twisted's
default on Linux) against the asyncio reactor (``-r asyncio``) and asyncio
over uvloop (``-r uvloop``, when uvloop is installed), side by side in one
run. A script that prints numbers, not a test.

    python bench/reactors.py [--repeat 5] [--seconds 8] [--streams 5000]
                             [--subscribers 1000] [--events 100]

Each round runs every reactor in turn (fresh processes; server on CPU 0,
load generator on CPU 1), rounds interleaved:

- plain GET: ``wrk -t1 -c50`` on a route returning ``"hello"``, access log
  off (bench/plain_get.py's workload), requests/s;
- burst fan-out: 1,000 SSE subscribers of a hub channel, one POST
  publishing 100 events of 256 B in one reactor turn (bench/sse.py's
  "burst", its C client), deliveries/s;
- idle memory: server RSS per idle SSE stream at ``--streams``
  (bench/sse.py's "idle"), KiB;
- connection rate: how fast those idle streams were opened (connect to
  response head), connections/s.

Printed: median (min-max) of ``--repeat`` rounds, and each reactor's
medians as a ratio of epoll's. The issue's rule: asyncio (+uvloop) becomes
the default only if within 10% of epoll on each.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import shutil
import signal
import statistics
import sys
import tempfile

from _common import ANY_REVISION, TOP, start
from plain_get import wrk
from sse import BACKLOG, HUB_ROUTES, build_client, fan_out, idle_memory, warm_up

HELLO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "routes", "hello.py")


def command(reactor: str, routes: str) -> list[str]:
    """``twistd -r REACTOR -n oxian`` on an ephemeral port, log off."""
    return [
        sys.executable,
        "-c",
        "from twisted.scripts.twistd import run; run()",
        "-r",
        reactor,
        "-n",
        "--pidfile=",
        "oxian",
        "--listen",
        f"tcp:0:interface=127.0.0.1:backlog={BACKLOG}",
        "--routes",
        routes,
        "--access-log",
        "off",
    ]


def routes() -> str:
    """The hub bench's routes, and ``/hello``."""
    root = tempfile.mkdtemp(prefix="oxian-bench-reactors-")
    for name in os.listdir(HUB_ROUTES):
        if name.endswith(".py"):
            shutil.copy(os.path.join(HUB_ROUTES, name), root)
    shutil.copy(HELLO, root)
    return root


def spread(values: list[float]) -> str:
    median = statistics.median(values)
    digits = 0 if median >= 100 else 1
    return f"{median:,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.streams + 1000
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    reactors = ["epoll", "asyncio"]
    if importlib.util.find_spec("uvloop") is not None:
        reactors.append("uvloop")
    else:
        print("uvloop is not installed: its column is left out")
    tree = routes()
    client = build_client(tempfile.mkdtemp(prefix="oxian-bench-"))
    rows = {
        "plain GET, requests/s": "get",
        "burst fan-out, deliveries/s": "burst",
        f"idle stream at {args.streams}, KiB": "idle",
        "new connections/s": "connect",
    }
    results: dict[str, dict[str, list[float]]] = {
        r: {key: [] for key in rows.values()} for r in reactors
    }
    for _ in range(args.repeat):
        for reactor in reactors:
            measured = results[reactor]
            process, port = start(command(reactor, tree), ANY_REVISION, TOP)
            try:
                wrk(port, "/hello", 2, 50)
                measured["get"].append(wrk(port, "/hello", args.seconds, 50)[0])
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
            process, port = start(command(reactor, tree), ANY_REVISION, TOP)
            try:
                warm_up(client, port)
                out = fan_out(client, port, args.subscribers, args.events, "burst")
                measured["burst"].append(out["rate"])
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
            process, port = start(command(reactor, tree), ANY_REVISION, TOP)
            try:
                warm_up(client, port)
                memory, rate = idle_memory(client, port, process.pid, [args.streams])
                measured["idle"].append(memory[args.streams] / 1024)
                measured["connect"].append(rate)
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
    print(
        f"reactors: median (min-max) of {args.repeat} interleaved rounds; "
        "server CPU 0, load CPU 1"
    )
    width = 30
    print(f"{'':<34}" + "".join(f"{r:>{width}}" for r in reactors))
    for label, key in rows.items():
        cells = "".join(f"{spread(results[r][key]):>{width}}" for r in reactors)
        print(f"{label:<34}{cells}")
    print("ratios of medians to epoll (idle KiB: lower is better):")
    for reactor in reactors[1:]:
        cells = []
        for label, key in rows.items():
            ours = statistics.median(results[reactor][key])
            theirs = statistics.median(results["epoll"][key])
            cells.append(f"{label.split(',')[0]} {ours / theirs:.2f}x")
        print(f"  {reactor}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
