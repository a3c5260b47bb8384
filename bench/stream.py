"""
Streaming throughput and memory: a 512 MiB body written in 64 KiB chunks,
each write waiting for backpressure, served by ``twistd oxian``, by plain
``twisted.web`` (a push producer, its idiomatic best) and by ``aiohttp``
(``await response.write``), in the same run. Prints MiB/s for 1 and 50
concurrent clients, the server's RSS growth while one client reads nothing
for 3 s, and the ratios. A script that prints numbers, not a test.

    pip install aiohttp   # for the comparison
    python bench/stream.py [--mib 512] [--clients 1 50] [--stall 3]

Each server runs on CPU 0, the client (one ``curl --parallel``) on CPU 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

from _common import oxian_command, rss_bytes, start

CHUNK = 64 * 1024
ROUTES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "routes")

TWISTED_SERVER = """
from twisted.internet import reactor
from twisted.internet.interfaces import IPushProducer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface import implementer

CHUNK = bytes(64 * 1024)

@implementer(IPushProducer)
class Chunks:
    def __init__(self, request, count):
        self.request, self.left = request, count
        self.paused = self.stopped = False
        request.registerProducer(self, True)
        request.notifyFinish().addErrback(lambda _: self.stopProducing())
        self.resumeProducing()

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        while self.left and not self.paused and not self.stopped:
            self.request.write(CHUNK)
            self.left -= 1
        if not self.left and not self.stopped:
            self.stopped = True
            self.request.unregisterProducer()
            self.request.finish()

    def stopProducing(self):
        self.stopped = True

class Stream(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/octet-stream")
        Chunks(request, int(request.args[b"chunks"][0]))
        return NOT_DONE_YET

port = reactor.listenTCP(0, Site(Stream()), interface="127.0.0.1")
print("listening on", port.getHost().port, flush=True)
reactor.run()
"""

AIOHTTP_SERVER = """
import asyncio
from aiohttp import web

CHUNK = bytes(64 * 1024)

async def stream(request):
    response = web.StreamResponse(
        headers={"Content-Type": "application/octet-stream"}
    )
    await response.prepare(request)
    for _ in range(int(request.query["chunks"])):
        await response.write(CHUNK)
    await response.write_eof()
    return response

async def main():
    app = web.Application()
    app.router.add_get("/stream", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print("listening on", site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def fetch_all(port: int, path: str, clients: int, body: int) -> float:
    """
    MiB/s of ``clients`` concurrent downloads of ``path``, in total, by one
    ``curl --parallel`` (C, so that the client is not what is measured).
    """
    url = f"http://127.0.0.1:{port}{path}"
    command = ["curl", "-s", "--parallel", "--parallel-max", str(clients)]
    for _ in range(clients):
        command += ["-o", "/dev/null", "-w", "%{http_code} %{size_download}\\n", url]
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    elapsed = time.perf_counter() - started
    results = out.split()
    codes, sizes = results[::2], [int(n) for n in results[1::2]]
    if len(sizes) != clients or set(codes) != {"200"} or min(sizes) < body:
        raise SystemExit(f"incomplete responses from {path}: {out!r}")
    return sum(sizes) / elapsed / (1024 * 1024)


def stalled_growth(pid: int, port: int, path: str, seconds: float) -> int:
    """Server RSS growth while one client reads nothing for ``seconds``."""
    before = rss_bytes(pid)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    time.sleep(seconds)
    during = rss_bytes(pid)
    sock.close()
    return during - before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--stall", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3, help="median of N runs")
    parser.add_argument("--only", nargs="+", help="servers to run")
    args = parser.parse_args()
    if not shutil.which("curl"):
        raise SystemExit("needs curl (apt-get install curl)")
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {1})
    chunks = args.mib * 1024 * 1024 // CHUNK
    body = chunks * CHUNK
    servers = {
        "oxian_tw": (*oxian_command(ROUTES), "/stream"),
        "twisted.web": (
            [sys.executable, "-c", TWISTED_SERVER],
            r"listening on (\d+)",
            "/",
        ),
        "aiohttp": (
            [sys.executable, "-c", AIOHTTP_SERVER],
            r"listening on (\d+)",
            "/stream",
        ),
    }
    chosen = {n: v for n, v in servers.items() if not args.only or n in args.only}
    running = {}
    try:
        # All servers up at once (idle ones cost nothing), measured in turn,
        # so that drift in the machine's speed hits them alike.
        for name, (command, pattern, path) in chosen.items():
            process, port = start(command, pattern)
            running[name] = (process, port, f"{path}?chunks={chunks}")
            fetch_all(port, f"{path}?chunks=16", 1, 16 * CHUNK)  # warm-up
        runs: dict[str, dict[int, list[float]]] = {n: {} for n in running}
        for clients in args.clients:
            for _ in range(args.repeat):
                for name, (_, port, url) in running.items():
                    runs[name].setdefault(clients, []).append(
                        fetch_all(port, url, clients, body)
                    )
        results = {
            name: {str(c): statistics.median(r) for c, r in runs[name].items()}
            for name in running
        }
        for name, (process, port, url) in running.items():
            results[name]["rss"] = stalled_growth(process.pid, port, url, args.stall)
    finally:
        for process, _, _ in running.values():
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    print(
        f"{args.mib} MiB per client in 64 KiB awaited writes; "
        f"MiB/s in total, median of {args.repeat}"
    )
    header = "".join(f"{c:>4} client(s)      " for c in args.clients)
    print(f"{'server':<14}{header}RSS growth, stalled {args.stall:g} s")
    base = results.get("aiohttp")
    for name, row in results.items():
        cells = ""
        for clients in args.clients:
            value = row[f"{clients}"]
            ratio = f"({value / base[str(clients)]:.2f}x)" if base else ""
            cells += f"{value:>9,.0f} {ratio:<9}"
        print(f"{name:<14}{cells}{row['rss'] / 1024:>10,.0f} KiB")
    if base:
        print("ratios are to aiohttp")


if __name__ == "__main__":
    main()
