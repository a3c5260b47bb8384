"""
HTTP/2 next to HTTP/1.1 on the same ``twistd oxian``: h2c with prior
knowledge on a cleartext listener, so the numbers are HTTP/2's own cost
and not TLS's. A script that prints numbers, not a test.

- Streaming: ``--mib`` (512) MiB in 64 KiB awaited writes to 1 and 50
  clients (``h2load``; over h2 the 50 are streams of one connection),
  MiB/s in total.
- Many small writes: ``--rows`` (1,000,000) awaited CSV lines
  (``curl``), seconds; while it runs, another connection asks
  ``GET /hello`` every 20 ms over HTTP/1.1 (max and p99 ms).
- Burst fan-out: ``--subscribers`` (1,000) hub subscribers, one POST
  publishes ``--events`` (100) events of 256 B in one reactor turn;
  deliveries/s and p50/p99. HTTP/1.1 with ``sse_client.c``; HTTP/2 with
  ``http2_client.py`` (100 streams per connection, the ``h2`` library in
  Python: its CPU share of the run is printed, to show when it is the
  limit).
- Idle streams: server RSS per idle hub stream at ``--streams`` (10,000),
  and streams opened per second.

    python bench/http2.py [--repeat 3] [--mib 512] [--rows 1000000]
                       [--streams 10000] [--subscribers 1000] [--events 100]

The server runs on CPU 0, the clients on CPU 1; each number is the median
of ``--repeat`` rounds with the range, each round on fresh servers.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

from _common import oxian_command, pinned, start
from sse import BACKLOG, HUB_ROUTES, ROUTES, build_client, fan_out, idle_memory, spread
from stream import CHUNK

H2_CLIENT = [
    sys.executable,
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "http2_client.py"),
]
PROTOCOLS = ("HTTP/1.1", "h2c")


def download(port: int, path: str, clients: int, body: int, http2: bool) -> float:
    """
    MiB/s of ``clients`` concurrent downloads of ``path`` with ``h2load``:
    over h2c ``clients`` streams of one connection, over HTTP/1.1
    ``clients`` connections. (curl 7.88's ``--parallel`` fails to reuse a
    prior-knowledge connection: curl bug #10634.)
    """
    shape = ["-c", "1", "-m", str(clients)] if http2 else ["--h1", "-c", str(clients)]
    out = subprocess.run(
        pinned(
            1, ["h2load", "-n", str(clients), *shape, f"http://127.0.0.1:{port}{path}"]
        ),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    seconds = re.search(r"finished in ([0-9.]+)(m?s)", out)
    data = re.search(r"\((\d+)\) data", out)
    done = re.search(r"(\d+) succeeded", out)
    if not (seconds and data and done) or int(done.group(1)) != clients:
        raise SystemExit(f"h2load failed on {path}: {out}")
    elapsed = float(seconds.group(1)) / (1000 if seconds.group(2) == "ms" else 1)
    if int(data.group(1)) < clients * body:
        raise SystemExit(f"incomplete bodies from {path}: {out}")
    return int(data.group(1)) / elapsed / (1024 * 1024)


def many_writes(port: int, rows: int, http2: bool) -> dict[str, float]:
    """Seconds for ``rows`` awaited small writes; /hello latency meanwhile."""
    probes: list[float] = []
    running = True

    def probe() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while running:
            started = time.perf_counter()
            connection.request("GET", "/hello")
            connection.getresponse().read()
            probes.append(time.perf_counter() - started)
            time.sleep(0.02)
        connection.close()

    command = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}"]
    if http2:
        command.append("--http2-prior-knowledge")
    thread = threading.Thread(target=probe)
    thread.start()
    started = time.perf_counter()
    out = subprocess.run(
        pinned(1, [*command, f"http://127.0.0.1:{port}/rows?rows={rows}"]),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    seconds = time.perf_counter() - started
    running = False
    thread.join()
    code, size = out.split()
    if code != "200" or int(size) < rows * 4:
        raise SystemExit(f"incomplete /rows: {out!r}")
    probes.sort()
    return {
        "seconds": seconds,
        "probe max": probes[-1] * 1000,
        "probe p99": probes[int(len(probes) * 0.99)] * 1000,
    }


@contextlib.contextmanager
def running(
    command: tuple[list[str], str],
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A fresh server for one measurement (no heap inherited from another)."""
    process, port = start(*command)
    try:
        yield process, port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3, help="median of N rounds")
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.streams + 1000
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    listen = f"tcp:0:interface=127.0.0.1:backlog={BACKLOG}"
    plain = oxian_command(ROUTES, "--access-log", "off", listen=listen)
    hub = oxian_command(HUB_ROUTES, "--access-log", "off", listen=listen)
    c_client = build_client(tempfile.mkdtemp(prefix="oxian-bench-"))
    chunks = args.mib * 1024 * 1024 // CHUNK
    results: dict[str, dict[str, list[float]]] = {p: {} for p in PROTOCOLS}

    def record(protocol: str, key: str, value: float) -> None:
        results[protocol].setdefault(key, []).append(value)

    for _ in range(args.repeat):
        for protocol in PROTOCOLS:
            http2 = protocol == "h2c"
            with running(plain) as (_, port):
                download(port, "/stream?chunks=16", 1, 16 * CHUNK, http2)
                for clients in args.clients:
                    path = f"/stream?chunks={chunks}"
                    mib_s = download(port, path, clients, chunks * CHUNK, http2)
                    record(protocol, f"stream {clients}", mib_s)
                for key, value in many_writes(port, args.rows, http2).items():
                    record(protocol, f"rows {key}", value)
            client = H2_CLIENT if http2 else c_client
            with running(hub) as (_, port):
                fan_out(client, port, 10, 3, "burst")
                out = fan_out(client, port, args.subscribers, args.events, "burst")
                for key, value in out.items():
                    record(protocol, f"burst {key}", value)
            with running(hub) as (process, port):
                memory, rate = idle_memory(client, port, process.pid, [args.streams])
                record(protocol, "idle", memory[args.streams] / 1024)
                record(protocol, "idle rate", rate)

    print(
        f"HTTP/2 (h2c, prior knowledge) next to HTTP/1.1, one twistd oxian "
        f"(--access-log off); median (min-max) of {args.repeat}"
    )
    rows = [
        *((f"stream {c} client(s), MiB/s", f"stream {c}") for c in args.clients),
        (f"{args.rows:,} awaited writes, s", "rows seconds"),
        ("  GET /hello meanwhile, p99 ms", "rows probe p99"),
        ("  GET /hello meanwhile, max ms", "rows probe max"),
        (f"burst to {args.subscribers}: deliveries/s", "burst rate"),
        ("burst p50 ms", "burst p50"),
        ("burst p99 ms", "burst p99"),
        ("burst: load generator CPU share", "burst client cpu"),
        (f"KiB per idle stream at {args.streams:,}", "idle"),
        ("idle streams opened/s", "idle rate"),
    ]
    width = 28
    print(f"{'':<40}" + "".join(f"{p:>{width}}" for p in PROTOCOLS) + "   h2c/HTTP/1.1")
    for label, key in rows:
        cells = ""
        medians = []
        for protocol in PROTOCOLS:
            values = results[protocol].get(key)
            cells += f"{spread(values) if values else '-':>{width}}"
            medians.append(statistics.median(values) if values else None)
        ratio = (
            f"{medians[1] / medians[0]:.2f}x"
            if None not in medians and medians[0]
            else ""
        )
        print(f"{label:<40}{cells}   {ratio}")


if __name__ == "__main__":
    main()
