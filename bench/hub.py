"""
The hub with issue 17's features on, against the hub as it was before them
(``--before``, a commit checked out here in a temporary worktree), in the
same run. A script that prints numbers, not a test.

Servers, each ``twistd -n oxian`` on CPU 0 (load on CPU 1):

- "before": the ``--before`` commit's oxian_tw, ``bench/hub_routes``;
- "now": this checkout, the same routes;
- "now, presence + history": this checkout, ``bench/hub_features_routes``:
  every subscriber present on the channel (with info) and asking for
  ``history=10``;

each in memory and, when ``redis-server`` is installed, with ``--hub
redis://...`` (a fresh database per server).

Workloads, each on a fresh server after the same warm-up (10 subscribers
and 3 events on another channel, so nothing is kept on the measured one):

- publish rate: one POST publishes ``--publishes`` (20,000) events of
  256 B back to back on a channel nobody subscribes to, every publish
  awaited; events/s from the time measured in the process;
- burst: ``--subscribers`` (1,000) subscribers, one POST publishes
  ``--events`` (100) events back to back: deliveries/s, p50/p99 ms;
- paced 20 ms: the same subscribers, one event per POST 20 ms apart.

    python bench/hub.py [--before REV] [--repeat 3] [--subscribers 1000]
                        [--events 100] [--publishes 20000] [--only NAME ...]

Each number is the median of ``--repeat`` runs with the range of the runs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

from _common import TOP, RedisServer, checkout, oxian_command, remove_checkout, start
from sse import PAD, build_client, fan_out, spread

HERE = os.path.dirname(os.path.abspath(__file__))
ROUTES = os.path.join(HERE, "hub_routes")
FEATURE_ROUTES = os.path.join(HERE, "hub_features_routes")
#: The last commit before issue 17's hub.
BEFORE = "b720058"
MODES = ("publish rate", "burst", "paced 20 ms")


def request(port: int, method: str, path: str) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"{method} {path}: {response.status} {body[:200]!r}")
        return json.loads(body)
    finally:
        connection.close()


def warm_up(port: int) -> None:
    """10 subscribers and 3 events on channel ``warm``; then they leave."""
    subscribers = []
    for _ in range(10):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /events?channel=warm HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(4096)
        subscribers.append(sock)
    request(port, "POST", f"/publish?channel=warm&seq=0&count=3&pad={PAD}")
    request(port, "POST", "/publish-many?count=100")
    for sock in subscribers:
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default=BEFORE, help="the hub to compare with")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--publishes", type=int, default=20000)
    parser.add_argument("--only", nargs="+", help="servers to run")
    args = parser.parse_args()
    before = checkout(args.before)
    redis = None
    hubs = [("memory", [])]
    if shutil.which("redis-server"):
        redis = RedisServer(tempfile.mkdtemp(prefix="oxian-bench-redis-"))
        hubs.append(("redis", ["--hub", redis.url()]))
    servers = {}
    db = 0
    for hub, options in hubs:
        for name, routes, top in (
            ("before", ROUTES, before),
            ("now", ROUTES, TOP),
            ("now, presence + history", FEATURE_ROUTES, TOP),
        ):
            if options:
                db += 1
                options = ["--hub", redis.url(db)]  # type: ignore[union-attr]
            label = f"{hub}: {name}"
            if not args.only or label in args.only:
                command, pattern = oxian_command(routes, *options)
                servers[label] = (command, pattern, top)
    client = build_client(tempfile.mkdtemp(prefix="oxian-bench-"))
    results: dict[str, dict[str, list[float]]] = {n: {} for n in servers}
    try:
        for _ in range(args.repeat):
            for name, (command, pattern, top) in servers.items():
                for mode in MODES:
                    process, port = start(command, pattern, top=top)
                    try:
                        warm_up(port)
                        if mode == "publish rate":
                            out = request(
                                port, "POST", f"/publish-many?count={args.publishes}"
                            )
                            found = {"rate": out["count"] / out["seconds"]}
                        else:
                            found = fan_out(
                                client, port, args.subscribers, args.events, mode
                            )
                    finally:
                        process.send_signal(signal.SIGTERM)
                        process.wait(timeout=60)
                    for key, value in found.items():
                        results[name].setdefault(f"{mode} {key}", []).append(value)
                    if redis is not None:
                        redis_flush(redis)
    finally:
        remove_checkout(before)
        if redis is not None:
            redis.stop()
    print(
        f"hub: before = {args.before}; {args.subscribers} subscribers x "
        f"{args.events} events of 256 B; publish rate: {args.publishes} "
        f"publishes; median (min-max) of {args.repeat}"
    )
    rows = [("publish rate: events/s", "publish rate rate")]
    for mode in MODES[1:]:
        rows += [
            (f"{mode}: deliveries/s", f"{mode} rate"),
            (f"{mode}: p50 ms", f"{mode} p50"),
            (f"{mode}: p99 ms", f"{mode} p99"),
        ]
    for hub, _ in hubs:
        names = [n for n in results if n.startswith(f"{hub}: ")]
        if not names:
            continue
        print(f"\n{hub}")
        print(f"{'':<28}" + "".join(f"{n[len(hub) + 2 :]:>28}" for n in names))
        for label, key in rows:
            cells = "".join(f"{spread(results[n][key]):>28}" for n in names)
            print(f"{label:<28}{cells}")
        base = f"{hub}: before"
        if base in results:
            for name in names:
                if name == base:
                    continue
                ratios = []
                for label, key in rows:
                    if key.endswith(" p50"):
                        continue
                    ours = sorted(results[name][key])[len(results[name][key]) // 2]
                    theirs = sorted(results[base][key])[len(results[base][key]) // 2]
                    ratios.append(f"{label} {ours / theirs:.2f}x")
                print(f"  {name[len(hub) + 2 :]} / before: " + "; ".join(ratios))


def redis_flush(redis: RedisServer) -> None:
    """Every database emptied between runs, so none inherits history."""
    subprocess.run(
        ["redis-cli", "-p", str(redis.port), "FLUSHALL"],
        check=True,
        capture_output=True,
    )


if __name__ == "__main__":
    sys.exit(main())
