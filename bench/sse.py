"""
Server-Sent Events at scale, ``twistd oxian`` against plain ``twisted.web``
(its idiomatic best: one encoded event written to each request) in the same
run. A script that prints numbers, not a test.

- Idle memory: server RSS per open, idle stream at 1,000 and 10,000 streams.
- Fan-out: 1,000 subscribers, 100 events of 256 B each, published one POST
  at a time: "oxian_tw" like the seed's chat (the route loops ``sse.send``
  over a module-level set), "oxian_tw hub" through ``ctx.hub.publish`` (one
  encoding per event, history kept), "oxian_tw hub redis" the same with
  ``--hub redis://...`` (a ``redis-server`` started here, when installed);
  deliveries/s and p50/p99 latency from
  publication to arrival, back to back (each POST as soon as the last one
  answered) and paced (20 ms apart).

    python bench/sse.py [--streams 1000 10000] [--subscribers 1000]
                        [--events 100] [--repeat 1]

Servers run on CPU 0, the load generator (``sse_client.c``, built here
with the system's C compiler) on CPU 1.
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
import tempfile
import time

from _common import RedisServer, oxian_command, pinned, rss_bytes, start

ROUTES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "routes")
HUB_ROUTES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hub_routes")
EVENT_BYTES = 256
BACKLOG = 4096

TWISTED_SERVER = """
import json, sys, time
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

SUBSCRIBERS = set()

class Events(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        request.write(b"")
        SUBSCRIBERS.add(request)
        request.notifyFinish().addBoth(lambda _: SUBSCRIBERS.discard(request))
        return NOT_DONE_YET

class Publish(Resource):
    isLeaf = True

    def render_POST(self, request):
        message = {
            "seq": int(request.args[b"seq"][0]),
            "t": time.time(),
            "pad": request.args[b"pad"][0].decode(),
        }
        data = json.dumps(message, separators=(",", ":")).encode()
        event = b"event: message\\ndata: " + data + b"\\n\\n"
        for subscriber in SUBSCRIBERS:
            subscriber.write(event)
        request.setHeader(b"content-type", b"application/json")
        return b'{"sent":%d}' % len(SUBSCRIBERS)

root = Resource()
root.putChild(b"events", Events())
root.putChild(b"publish", Publish())
port = reactor.listenTCP(0, Site(root), interface="127.0.0.1", backlog=BACKLOG)
print("listening on", port.getHost().port, flush=True)
reactor.run()
""".replace("BACKLOG", str(BACKLOG))


CLIENT_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sse_client.c")
PAD = "x" * (EVENT_BYTES - len('{"seq":100,"t":1800000000.123456,"pad":""}'))


def build_client(directory: str) -> str:
    """Compile the C load generator; return its path."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise SystemExit("needs a C compiler (apt-get install gcc)")
    binary = os.path.join(directory, "sse_client")
    subprocess.run([compiler, "-O2", "-o", binary, CLIENT_SOURCE], check=True)
    return binary


def idle_memory(client: str, port: int, pid: int, steps: list[int]) -> dict[int, float]:
    """Bytes of server RSS per idle stream, at each count in ``steps``."""
    before = rss_bytes(pid)
    clients = []
    result = {}
    opened = 0
    try:
        for total in steps:
            process = subprocess.Popen(
                pinned(1, [client, "idle", str(port), str(total - opened)]),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            clients.append(process)
            if process.stdout.readline().strip() != "ready":
                raise SystemExit("the idle client failed")
            opened = total
            time.sleep(1.0)
            result[total] = (rss_bytes(pid) - before) / total
    finally:
        for process in clients:
            process.stdin.close()
            process.wait(timeout=60)
    return result


def fan_out(
    client: str, port: int, subscribers: int, events: int, gap_ms: float
) -> dict:
    out = subprocess.run(
        pinned(
            1,
            [
                client,
                "fanout",
                str(port),
                str(subscribers),
                str(events),
                str(gap_ms),
                PAD,
            ],
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode:
        raise SystemExit(f"the fan-out client failed: {out.stderr}")
    delivered, seconds, p50, p99 = out.stdout.split()
    return {
        "rate": int(delivered) / float(seconds),
        "p50": float(p50),
        "p99": float(p99),
    }


def warm_up(client: str, port: int) -> None:
    fan_out(client, port, 10, 3, 0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1, help="median of N runs")
    parser.add_argument("--only", nargs="+", help="servers to run")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max(args.streams) + 1000
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise SystemExit(f"needs {need} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    servers = {
        "oxian_tw": oxian_command(
            ROUTES, listen=f"tcp:0:interface=127.0.0.1:backlog={BACKLOG}"
        ),
        "oxian_tw hub": oxian_command(
            HUB_ROUTES, listen=f"tcp:0:interface=127.0.0.1:backlog={BACKLOG}"
        ),
        "twisted.web": ([sys.executable, "-c", TWISTED_SERVER], r"listening on (\d+)"),
    }
    redis = None
    if shutil.which("redis-server") and (
        not args.only or "oxian_tw hub redis" in args.only
    ):
        redis = RedisServer(tempfile.mkdtemp(prefix="oxian-bench-redis-"))
        servers["oxian_tw hub redis"] = oxian_command(
            HUB_ROUTES,
            "--hub",
            redis.url(),
            listen=f"tcp:0:interface=127.0.0.1:backlog={BACKLOG}",
        )
    chosen = {n: v for n, v in servers.items() if not args.only or n in args.only}
    results: dict[str, dict[str, list[float]]] = {n: {} for n in chosen}

    def record(name: str, key: str, value: float) -> None:
        results[name].setdefault(key, []).append(value)

    client = build_client(tempfile.mkdtemp(prefix="oxian-bench-"))
    for _ in range(args.repeat):
        for name, (command, pattern) in chosen.items():
            # A fresh server per measurement, so one does not inherit the
            # other's heap.
            process, port = start(command, pattern)
            try:
                warm_up(client, port)
                memory = idle_memory(client, port, process.pid, args.streams)
                for count, per in memory.items():
                    record(name, f"idle {count}", per)
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
            for mode, gap_ms in (("back to back", 0), ("paced 20 ms", 20)):
                process, port = start(command, pattern)
                try:
                    warm_up(client, port)
                    out = fan_out(client, port, args.subscribers, args.events, gap_ms)
                finally:
                    process.send_signal(signal.SIGTERM)
                    process.wait(timeout=60)
                for key, value in out.items():
                    record(name, f"{mode} {key}", value)

    median = {
        n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()
    }
    print(
        f"SSE: idle streams {args.streams}; fan-out {args.subscribers} subscribers "
        f"x {args.events} events of {EVENT_BYTES} B; median of {args.repeat}"
    )
    names = list(median)
    print(f"{'':<34}" + "".join(f"{n:>20}" for n in names))
    for count in args.streams:
        key = f"idle {count}"
        print(
            f"{'RSS per idle stream at ' + str(count):<34}"
            + "".join(f"{median[n][key] / 1024:>16.1f} KiB" for n in names)
        )
    for mode in ("back to back", "paced 20 ms"):
        print(
            f"{'fan-out ' + mode + ', deliveries/s':<34}"
            + "".join(f"{median[n][mode + ' rate']:>20,.0f}" for n in names)
        )
        print(
            f"{'  p50 / p99 latency, ms':<34}"
            + "".join(
                f"{median[n][mode + ' p50']:>12.1f} /{median[n][mode + ' p99']:>6.1f}"
                for n in names
            )
        )
    base = "twisted.web"
    for name in names:
        if name == base or base not in median:
            continue
        for mode in ("back to back", "paced 20 ms"):
            ratio = median[name][mode + " rate"] / median[base][mode + " rate"]
            print(f"{name} / {base} fan-out rate, {mode}: {ratio:.2f}x")
    if redis is not None:
        redis.stop()


if __name__ == "__main__":
    main()
