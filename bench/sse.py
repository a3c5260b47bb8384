"""
Server-Sent Events at scale, ``twistd oxian`` against plain ``twisted.web``
(its idiomatic best: one encoded event written to each request) in the same
run. A script that prints numbers, not a test.

- Idle streams: server RSS per open, idle stream at each ``--streams``
  count (default 5,000 and 10,000), and the rate at which the last step's
  connections were set up (connect to response head), in connections/s.
- Streams that sent one event (``--modes ready``), as issue 33 measures
  them: the route sends ``ready`` at open (``bench/routes/ready.py``, the
  hub's ``bench/hub_routes/ready.py``, twisted.web's ``/ready``); the
  client keeps 64 non-blocking connects in flight and counts a stream once
  its first event arrived (as a Go client with one epoll thread does);
  ``--modes python``: the same from a Python asyncio client, after 500
  warm-up streams opened and closed before the baseline.
- Fan-out to ``--subscribers`` (1,000) of events of 256 B:

  - burst: one POST makes the server publish ``--events`` (100) events
    back to back inside one reactor turn (token streams, price ticks, chat
    bursts);
  - back to back: one event per POST, each POST as soon as the last one
    answered;
  - paced 20 ms: one event per POST, 20 ms apart.

  Deliveries/s and p50/p99 latency from publication (the time inside the
  event) to arrival.

Servers: "oxian_tw" like the seed's chat (the route loops ``sse.send`` over
a module-level set), "oxian_tw hub" through ``ctx.hub.publish`` (one
encoding per event, history kept), "oxian_tw hub redis" the same with
``--hub redis://...`` (a ``redis-server`` started here, when installed),
and "twisted.web". ``twistd oxian`` raises the garbage collector's young
threshold to 5000 (``--gc-threshold``); two more servers show what that
setting does on each side: "oxian_tw hub, gc 700" (Python's default) and
"twisted.web, gc 5000".

    python bench/sse.py [--streams 5000 10000] [--subscribers 1000]
                        [--events 100] [--repeat 3] [--modes burst paced]
                        [--only NAME ...] [--against REV]
                        [-- twistd oxian options]

With ``--against REV`` each oxian_tw server also runs from the git
revision ``REV`` (a temporary worktree), as "NAME @ REV", in every round
beside this checkout's: a before/after in one run.

Servers run on CPU 0, the load generator (``sse_client.c``, built here
with the system's C compiler) on CPU 1. Each number is the median of
``--repeat`` runs, each on a fresh server, with the range of the runs.
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

from _common import (
    TOP,
    RedisServer,
    against,
    oxian_command,
    pinned,
    remove_checkout,
    rss_bytes,
    start,
)

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

class Ready(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        request.write(b"event: ready\\ndata: ready\\n\\n")
        SUBSCRIBERS.add(request)
        request.notifyFinish().addBoth(lambda _: SUBSCRIBERS.discard(request))
        return NOT_DONE_YET

class Publish(Resource):
    isLeaf = True

    def render_POST(self, request):
        first = int(request.args[b"seq"][0])
        count = int(request.args.get(b"count", [b"1"])[0])
        pad = request.args[b"pad"][0].decode()
        for seq in range(first, first + count):
            message = {"seq": seq, "t": time.time(), "pad": pad}
            data = json.dumps(message, separators=(",", ":")).encode()
            event = b"event: message\\ndata: " + data + b"\\n\\n"
            for subscriber in SUBSCRIBERS:
                subscriber.write(event)
        request.setHeader(b"content-type", b"application/json")
        return b'{"sent":%d}' % len(SUBSCRIBERS)

if sys.argv[1:2] == ["gc"]:
    import gc
    gc.set_threshold(int(sys.argv[2]), 10, 10)

root = Resource()
root.putChild(b"events", Events())
root.putChild(b"publish", Publish())
root.putChild(b"ready", Ready())
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


#: Issue 33's Python client: ``python -c PYTHON_CLIENT ready PORT N``
#: opens (then closes) 500 warm-up streams of ``/ready`` once, then N held
#: ones, 64 connects in flight, each done at its first event; prints
#: "ready SECONDS" and holds them until stdin closes.
PYTHON_CLIENT = """
import asyncio, sys, time

GET = (
    b"GET /ready HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n"
    b"Accept: text/event-stream\\r\\n\\r\\n"
)
port, count = int(sys.argv[2]), int(sys.argv[3])
held = []

async def one():
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(GET)
    got = b""
    while True:
        chunk = await reader.read(2048)
        if not chunk:
            raise SystemExit("a stream closed before its first event")
        got += chunk
        head = got.find(b"\\r\\n\\r\\n")
        if head >= 0 and b"\\n\\n" in got[head + 4:]:
            return writer

async def opened(n, keep):
    gate = asyncio.Semaphore(64)

    async def gated():
        async with gate:
            writer = await one()
        if keep:
            held.append(writer)
        else:
            writer.close()

    await asyncio.gather(*(gated() for _ in range(n)))

async def main():
    if not WARMED_UP[0]:
        await opened(500, False)
    started = time.monotonic()
    await opened(count, True)
    print("ready", time.monotonic() - started, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

WARMED_UP = [sys.argv[4:] == ["warm"]]
asyncio.run(main())
"""


def idle_memory(
    client: str | list[str],
    port: int,
    pid: int,
    steps: list[int],
    how: str = "idle",
    extra: tuple[str, ...] = (),
) -> tuple[dict[int, float], float]:
    """
    Bytes of server RSS per idle stream at each count in ``steps``, and the
    rate (streams/s) at which the last step's streams were opened, with
    the load generator ``client`` (a path, or a command line); ``how``:
    ``idle`` (``/events``, every connect at once, nothing sent at open) or
    ``ready`` (``/ready``, 64 connects in flight, each done at its first
    event: issue 33's client).
    """
    client = [client] if isinstance(client, str) else client
    before = rss_bytes(pid)
    clients = []
    result = {}
    opened = 0
    rate = 0.0
    try:
        for total in steps:
            process = subprocess.Popen(
                pinned(1, [*client, how, str(port), str(total - opened), *extra]),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            clients.append(process)
            word, _, seconds = process.stdout.readline().strip().partition(" ")
            if word != "ready":
                raise SystemExit("the idle client failed")
            rate = (total - opened) / float(seconds)
            opened = total
            time.sleep(1.0)
            result[total] = (rss_bytes(pid) - before) / total
    finally:
        for process in clients:
            process.stdin.close()
            process.wait(timeout=60)
    return result, rate


#: Fan-out modes: the load generator's arguments after the counts.
MODES = {
    "burst": lambda events: ["burst", str(events), PAD],
    "back to back": lambda events: ["fanout", str(events), "0", PAD],
    "paced 20 ms": lambda events: ["fanout", str(events), "20", PAD],
}


def fan_out(
    client: str | list[str], port: int, subscribers: int, events: int, mode: str
) -> dict:
    """
    Deliveries/s and p50/p99 ms of one fan-out run (and ``cpu``, the load
    generator's own CPU seconds, when it reports them).
    """
    client = [client] if isinstance(client, str) else client
    kind, *rest = MODES[mode](events)
    out = subprocess.run(
        pinned(1, [*client, kind, str(port), str(subscribers), *rest]),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode:
        raise SystemExit(f"the fan-out client failed: {out.stderr}")
    delivered, seconds, p50, p99, *cpu = out.stdout.split()
    result = {
        "rate": int(delivered) / float(seconds),
        "p50": float(p50),
        "p99": float(p99),
    }
    if cpu:
        result["client cpu"] = float(cpu[0]) / float(seconds)
    return result


def warm_up(client: str, port: int) -> None:
    fan_out(client, port, 10, 3, "back to back")


def spread(values: list[float]) -> str:
    """``median (min–max)``, for a row of runs."""
    low, high, median = min(values), max(values), statistics.median(values)
    digits = 0 if median >= 100 else 1
    return f"{median:,.{digits}f} ({low:,.{digits}f}-{high:,.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, nargs="+", default=[5000, 10000])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="median of N runs")
    parser.add_argument("--only", nargs="+", help="servers to run")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["idle", "ready", "python", *MODES],
        default=["idle", *MODES],
    )
    parser.add_argument(
        "--against", metavar="REV", help="also run the oxian_tw servers of REV"
    )
    parser.add_argument("oxian_args", nargs="*", help="more twistd oxian options")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max(args.streams) + 1000
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise SystemExit(f"needs {need} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    listen = f"tcp:0:interface=127.0.0.1:backlog={BACKLOG}"
    servers = {
        "oxian_tw": oxian_command(ROUTES, *args.oxian_args, listen=listen),
        "oxian_tw hub": oxian_command(HUB_ROUTES, *args.oxian_args, listen=listen),
        "twisted.web": ([sys.executable, "-c", TWISTED_SERVER], r"listening on (\d+)"),
        # The garbage collector's young threshold, both ways round: oxian_tw
        # with Python's (twistd oxian sets 5000), twisted.web with ours.
        "oxian_tw hub, gc 700": oxian_command(
            HUB_ROUTES, "--gc-threshold", "0", *args.oxian_args, listen=listen
        ),
        "twisted.web, gc 5000": (
            [sys.executable, "-c", TWISTED_SERVER, "gc", "5000"],
            r"listening on (\d+)",
        ),
    }
    redis = None
    if shutil.which("redis-server") and (
        not args.only or "oxian_tw hub redis" in args.only
    ):
        redis = RedisServer(tempfile.mkdtemp(prefix="oxian-bench-redis-"))
        servers["oxian_tw hub redis"] = oxian_command(
            HUB_ROUTES, "--hub", redis.url(), *args.oxian_args, listen=listen
        )
    chosen = {
        n: (*v, TOP) for n, v in servers.items() if not args.only or n in args.only
    }
    older = against(chosen, args.against)
    try:
        run(chosen, args)
    finally:
        if older is not None:
            remove_checkout(older)
        if redis is not None:
            redis.stop()


def run(
    chosen: dict[str, tuple[list[str], str, str]], args: argparse.Namespace
) -> None:
    results: dict[str, dict[str, list[float]]] = {n: {} for n in chosen}

    def record(name: str, key: str, value: float) -> None:
        results[name].setdefault(key, []).append(value)

    client = build_client(tempfile.mkdtemp(prefix="oxian-bench-"))
    for _ in range(args.repeat):
        for name, (command, pattern, top) in chosen.items():
            # A fresh server per measurement, so one does not inherit the
            # other's heap.
            if "idle" in args.modes:
                process, port = start(command, pattern, top)
                try:
                    warm_up(client, port)
                    memory, rate = idle_memory(client, port, process.pid, args.streams)
                    for count, per in memory.items():
                        record(name, f"idle {count}", per / 1024)
                    record(name, "connect rate", rate)
                finally:
                    process.send_signal(signal.SIGTERM)
                    process.wait(timeout=60)
            if "python" in args.modes:
                process, port = start(command, pattern, top)
                python = [sys.executable, "-c", PYTHON_CLIENT]
                try:
                    warm_up(client, port)
                    # The 500 warm-up streams, before the baseline.
                    subprocess.run(
                        pinned(1, [*python, "ready", str(port), "0"]),
                        input="",
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    memory, rate = idle_memory(
                        python, port, process.pid, args.streams, "ready", ("warm",)
                    )
                    for count, per in memory.items():
                        record(name, f"python {count}", per / 1024)
                    record(name, "python rate", rate)
                finally:
                    process.send_signal(signal.SIGTERM)
                    process.wait(timeout=60)
            if "ready" in args.modes:
                process, port = start(command, pattern, top)
                try:
                    warm_up(client, port)
                    memory, rate = idle_memory(
                        client, port, process.pid, args.streams, "ready"
                    )
                    for count, per in memory.items():
                        record(name, f"ready {count}", per / 1024)
                    record(name, "ready rate", rate)
                finally:
                    process.send_signal(signal.SIGTERM)
                    process.wait(timeout=60)
            for mode in MODES:
                if mode not in args.modes:
                    continue
                process, port = start(command, pattern, top)
                try:
                    warm_up(client, port)
                    out = fan_out(client, port, args.subscribers, args.events, mode)
                finally:
                    process.send_signal(signal.SIGTERM)
                    process.wait(timeout=60)
                for key, value in out.items():
                    record(name, f"{mode} {key}", value)

    print(
        f"SSE: idle streams {args.streams}; fan-out {args.subscribers} subscribers "
        f"x {args.events} events of {EVENT_BYTES} B; median (min-max) of "
        f"{args.repeat}"
    )
    names = list(results)
    width = 30
    print(f"{'':<36}" + "".join(f"{n:>{width}}" for n in names))
    rows = []
    if "idle" in args.modes:
        rows += [(f"KiB per idle stream at {c}", f"idle {c}") for c in args.streams]
        last = args.streams[-1]
        first = args.streams[-2] if len(args.streams) > 1 else 0
        rows.append((f"new connections/s ({first} -> {last})", "connect rate"))
    if "ready" in args.modes:
        rows += [
            (f"KiB per stream that sent one event, at {c}", f"ready {c}")
            for c in args.streams
        ]
        last = args.streams[-1]
        first = args.streams[-2] if len(args.streams) > 1 else 0
        rows.append(
            (f"ready streams/s, 64 at a time ({first} -> {last})", "ready rate")
        )
    if "python" in args.modes:
        rows += [
            (f"KiB per stream, Python client, at {c}", f"python {c}")
            for c in args.streams
        ]
        last = args.streams[-1]
        first = args.streams[-2] if len(args.streams) > 1 else 0
        rows.append((f"Python client streams/s ({first} -> {last})", "python rate"))
    for mode in MODES:
        if mode in args.modes:
            rows += [
                (f"{mode}: deliveries/s", f"{mode} rate"),
                (f"{mode}: p50 ms", f"{mode} p50"),
                (f"{mode}: p99 ms", f"{mode} p99"),
            ]
    for label, key in rows:
        cells = "".join(f"{spread(results[n][key]):>{width}}" for n in names)
        print(f"{label:<36}{cells}")
    base = "twisted.web"
    if base in results:
        print(f"ratios of medians to {base}:")
        for name in names:
            if name == base:
                continue
            cells = []
            for label, key in rows:
                if key.endswith(" p50"):
                    continue
                ours = statistics.median(results[name][key])
                theirs = statistics.median(results[base][key])
                cells.append(f"{label} {ours / theirs:.2f}x")
            print(f"  {name}: " + "; ".join(cells))
    if args.against:
        print(f"ratios of medians to the same server @ {args.against}:")
        for name in names:
            before = f"{name} @ {args.against}"
            if before not in results:
                continue
            cells = []
            for label, key in rows:
                ours = statistics.median(results[name][key])
                theirs = statistics.median(results[before][key])
                cells.append(f"{label} {ours / theirs:.3f}x")
            print(f"  {name}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
