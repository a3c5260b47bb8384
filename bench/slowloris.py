"""
Slowloris: ``--connections`` (3,000) clients each sending one header line
every ``--interval`` (10) seconds and never finishing their request head,
while ``wrk`` measures a plain ``GET /hello`` beside them. A script that
prints numbers, not a test.

    python bench/slowloris.py [--connections 3000] [--interval 10]
                              [--repeat 3] [--only NAME ...]

For each server, in a fresh process: ``wrk -t1 -c50 -d8s`` alone, then the
attack starts, and once every attacking connection is open, ``wrk`` again;
the server's RSS growth during the attack; and how many attacking
connections the server still holds 20 s into the attack (after
``--header-timeout``, 15 s, for ``twistd oxian``; twisted.web resets its
60 s idle timer on every byte, so it holds them as long as they trickle).

Servers: "oxian_tw" (``twistd -n oxian --access-log off``) and
"twisted.web" (a leaf resource under ``Site``, its log off). Servers on
CPU 0; ``wrk`` and the attacker on CPU 1. Median (min-max) of the rounds.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time

from _common import oxian_command, pinned, rss_bytes, start
from plain_get import PLAIN_SERVER, spread, wrk

ROUTES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "routes")

#: The attacker: opens the connections, then trickles; answers "open N"
#: for each line on stdin, and exits at end of input.
ATTACKER = r"""
import selectors, socket, sys, time
port, count, interval = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
selector = selectors.DefaultSelector()
conns = set()
for n in range(count):
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    s.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
    conns.add(s)
    selector.register(s, selectors.EVENT_READ)
print("ready", flush=True)
selector.register(sys.stdin, selectors.EVENT_READ)
next_send = time.monotonic() + interval
while True:
    timeout = max(0.0, next_send - time.monotonic())
    for key, _ in selector.select(timeout):
        if key.fileobj is sys.stdin:
            if not sys.stdin.readline():
                sys.exit(0)
            print("open", len(conns), flush=True)
            continue
        s = key.fileobj
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        if not data:  # the server closed it (after its 408, if any)
            selector.unregister(s)
            s.close()
            conns.discard(s)
    if time.monotonic() >= next_send:
        for s in list(conns):
            try:
                s.send(b"X-Trickle: 1\r\n")
            except OSError:
                selector.unregister(s)
                s.close()
                conns.discard(s)
        next_send += interval
"""


def attack(port: int, count: int, interval: float) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        pinned(
            1, [sys.executable, "-c", ATTACKER, str(port), str(count), str(interval)]
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        raise SystemExit("the attacker could not open its connections")
    return process


def still_open(attacker: subprocess.Popen[str]) -> int:
    assert attacker.stdin is not None and attacker.stdout is not None
    attacker.stdin.write("status\n")
    attacker.stdin.flush()
    word, _, count = attacker.stdout.readline().partition(" ")
    return int(count)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="+", help="servers to run")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("needs wrk (apt-get install wrk)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.connections + 1000
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    servers = {
        "oxian_tw": oxian_command(ROUTES, "--access-log", "off"),
        "twisted.web": (
            [sys.executable, "-c", PLAIN_SERVER, "nolog"],
            r"listening on (\d+)",
        ),
    }
    chosen = {n: v for n, v in servers.items() if not args.only or n in args.only}
    rows = ("rate alone", "p99 alone", "rate attacked", "p99 attacked", "rss", "held")
    results: dict[str, dict[str, list[float]]] = {
        n: {r: [] for r in rows} for n in chosen
    }
    for _ in range(args.repeat):
        for name, (command, pattern) in chosen.items():
            process, port = start(command, pattern)
            attacker = None
            try:
                wrk(port, "/hello", 2, 50)  # warm-up
                rate, p99 = wrk(port, "/hello", args.seconds, 50)
                results[name]["rate alone"].append(rate)
                results[name]["p99 alone"].append(p99)
                before = rss_bytes(process.pid)
                began = time.monotonic()
                attacker = attack(port, args.connections, args.interval)
                rate, p99 = wrk(port, "/hello", args.seconds, 50)
                results[name]["rate attacked"].append(rate)
                results[name]["p99 attacked"].append(p99)
                results[name]["rss"].append((rss_bytes(process.pid) - before) / 2**20)
                time.sleep(max(0.0, 20 - (time.monotonic() - began)))
                results[name]["held"].append(still_open(attacker))
            finally:
                if attacker is not None:
                    attacker.stdin.close()  # type: ignore[union-attr]
                    attacker.wait(timeout=30)
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
    print(
        f"GET /hello, wrk -t1 -c50 -d{args.seconds}s, alone and beside "
        f"{args.connections} connections trickling a header line every "
        f"{args.interval:g} s; median (min-max) of {args.repeat}"
    )
    labels = {
        "rate alone": ("requests/s, alone", 0),
        "p99 alone": ("p99 ms, alone", 2),
        "rate attacked": ("requests/s, attacked", 0),
        "p99 attacked": ("p99 ms, attacked", 2),
        "rss": ("server RSS growth, MiB", 1),
        "held": ("attack connections held at 20 s", 0),
    }
    print(f"{'':<36}" + "".join(f"{n:>28}" for n in chosen))
    for key, (label, digits) in labels.items():
        print(
            f"{label:<36}"
            + "".join(f"{spread(results[n][key], digits):>28}" for n in chosen)
        )
    for name in chosen:
        alone = statistics.median(results[name]["rate alone"])
        attacked = statistics.median(results[name]["rate attacked"])
        print(f"{name}: attacked / alone {attacked / alone:.2f}x")


if __name__ == "__main__":
    main()
