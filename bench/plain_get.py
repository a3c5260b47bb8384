"""
Requests per second and p99 latency for a plain ``GET /hello`` returning a
small text body: ``twistd oxian`` against plain ``twisted.web`` resources
doing the same work, measured with ``wrk`` (Debian's ``wrk``) in the same
run. A script that prints numbers, not a test.

    python bench/plain_get.py [--seconds 8] [--connections 50] [--threads 1]
                              [--repeat 3] [--only NAME ...] [--against REV]

Issue 33's workload: ``--threads 2 --connections 50 --seconds 10``.

Servers:

- "twisted.web": a leaf ``Resource`` under ``Site`` with its default
  access log (Twisted's combined-format line to its logging system), as a
  twisted.web user writes it;
- "twisted.web, no log": the same with ``Site.log`` replaced by a no-op,
  the ceiling for anything built on twisted.web's ``Request``;
- "oxian_tw": ``twistd -n oxian`` with the default access log
  (``--access-log combined``) to its stdout;
- "oxian_tw, log off": the same with ``--access-log off``;
- "oxian_tw, log off, Twisted's parser": the same with ``--http-parser
  twisted`` (HTTP/1.1 parsed in Python; llhttp is the default since issue
  33; not with ``--against`` a revision before it);
- "oxian_tw, log off, metrics on": the same with ``--metrics /metrics``
  (every request recorded in the Prometheus histogram);
- "aiohttp": an ``aiohttp.web`` app answering the same text, its access
  log off (``access_log=None``), on asyncio's default loop (installed:
  ``pip install aiohttp``);
- "oxian_tw + pipeline": the default log, and the route below a
  ``dependencies.py`` (a singleton), a ``middleware.py`` (adds
  ``ctx.user``) and an ``interceptors.py`` (``before_run`` and
  ``after_run``).

With ``--against REV`` each oxian_tw server also runs from the git
revision ``REV`` (checked out in a temporary worktree), as "NAME @ REV",
alternating with this checkout's in every round: a before/after of a
change in one run.

Each server is pinned to CPU 0 and wrk to CPU 1 when ``taskset`` exists.
Each server's output (the access logs) goes to a file, as the issue's
workload says ("default access log (to a file)"): not to a pipe drained
by a thread of this script, which is not pinned and may run on the
server's core (as before 2026-12-07).
Beside the rate, the server's own CPU time (user and system, from
``/proc``) per request served: steadier than the rate when rounds are
noisy.
Every round runs each server in turn (fresh processes, a 2 s warm-up);
the table shows the median of the rounds and their range.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap

from _common import TOP, against, oxian_command, pinned, remove_checkout, start

PLAIN_SERVER = """
import sys
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

class Hello(Resource):
    isLeaf = True
    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"hello"

site = Site(Hello())
if sys.argv[1:] == ["nolog"]:
    site.log = lambda request: None
port = reactor.listenTCP(0, site, interface="127.0.0.1")
print("listening on", port.getHost().port, flush=True)
reactor.run()
"""

ROUTE = """
def GET(data, ctx):
    return "hello"
"""

PIPELINE = {
    "dependencies.py": """
        def dependencies(parent):
            return {"greeting": "world"}
    """,
    "middleware.py": """
        def middleware(data, ctx):
            return {"context": {"user": "bench"}}
    """,
    "interceptors.py": """
        def before_run(data, ctx):
            return None

        def after_run(result, ctx):
            return None
    """,
    "hello.py": ROUTE,
}


def tree(files: dict[str, str]) -> str:
    root = tempfile.mkdtemp()
    for name, source in files.items():
        with open(os.path.join(root, name), "w") as f:
            f.write(textwrap.dedent(source))
    return root


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


AIOHTTP = """
import asyncio
from aiohttp import web

async def hello(request):
    return web.Response(text="hello")

async def main():
    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print("listening on", port, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def wrk(
    port: int, path: str, seconds: int, connections: int, threads: int = 1
) -> tuple[float, float]:
    """Requests/s and the p99 latency in ms."""
    out = subprocess.run(
        pinned(
            1,
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{seconds}s",
                "--latency",
                f"http://127.0.0.1:{port}{path}",
            ],
        ),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()
    return rate, float(value) * _UNITS[unit]


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds process ``pid`` has used (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spread(values: list[float], digits: int) -> str:
    median = statistics.median(values)
    low, high = min(values), max(values)
    return f"{median:,.{digits}f} ({low:,.{digits}f}-{high:,.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="+", help="servers to run")
    parser.add_argument(
        "--against", metavar="REV", help="also run the oxian_tw servers of REV"
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("needs wrk (apt-get install wrk)")
    plain = [sys.executable, "-c", PLAIN_SERVER]
    hello = tree({"hello.py": ROUTE})
    servers = {
        "twisted.web": (plain, r"listening on (\d+)"),
        "twisted.web, no log": ([*plain, "nolog"], r"listening on (\d+)"),
        "oxian_tw": oxian_command(hello),
        "oxian_tw, log off": oxian_command(hello, "--access-log", "off"),
        "oxian_tw, log off, Twisted's parser": oxian_command(
            hello, "--access-log", "off", "--http-parser", "twisted"
        ),
        "oxian_tw + pipeline": oxian_command(tree(PIPELINE)),
        "oxian_tw, log off, metrics on": oxian_command(
            hello, "--access-log", "off", "--metrics", "/metrics"
        ),
    }
    try:
        import aiohttp  # noqa: F401 - only whether it is installed
    except ImportError:
        if args.only and "aiohttp" in args.only:
            raise SystemExit("aiohttp is not installed (pip install aiohttp)") from None
    else:
        servers["aiohttp"] = ([sys.executable, "-c", AIOHTTP], r"listening on (\d+)")
    chosen = {
        n: (*v, TOP) for n, v in servers.items() if not args.only or n in args.only
    }
    older = against(chosen, args.against)
    # (A revision before --http-parser cannot be asked for Twisted's parser.)
    chosen.pop(f"oxian_tw, log off, Twisted's parser @ {args.against}", None)
    try:
        run(chosen, args)
    finally:
        if older is not None:
            remove_checkout(older)


def run(
    chosen: dict[str, tuple[list[str], str, str]], args: argparse.Namespace
) -> None:
    rates: dict[str, list[float]] = {n: [] for n in chosen}
    p99s: dict[str, list[float]] = {n: [] for n in chosen}
    costs: dict[str, list[float]] = {n: [] for n in chosen}
    output = tempfile.mkdtemp(prefix="oxian-plain-get-")
    try:
        rounds(chosen, args, output, rates, p99s, costs)
    finally:
        shutil.rmtree(output, ignore_errors=True)
    report(chosen, args, rates, p99s, costs)


def rounds(
    chosen: dict[str, tuple[list[str], str, str]],
    args: argparse.Namespace,
    output: str,
    rates: dict[str, list[float]],
    p99s: dict[str, list[float]],
    costs: dict[str, list[float]],
) -> None:
    """Run every server in turn, ``args.repeat`` times; record what wrk says."""
    for _ in range(args.repeat):
        for name, (command, pattern, top) in chosen.items():
            log = os.path.join(output, "server.log")
            process, port = start(command, pattern, top, output=log)
            try:
                wrk(port, "/hello", 2, args.connections, args.threads)  # warm-up
                used = cpu_seconds(process.pid)
                rate, p99 = wrk(
                    port, "/hello", args.seconds, args.connections, args.threads
                )
                used = cpu_seconds(process.pid) - used
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
                os.remove(log)
            rates[name].append(rate)
            p99s[name].append(p99)
            costs[name].append(used / (rate * args.seconds) * 1e6)


def report(
    chosen: dict[str, tuple[list[str], str, str]],
    args: argparse.Namespace,
    rates: dict[str, list[float]],
    p99s: dict[str, list[float]],
    costs: dict[str, list[float]],
) -> None:
    """The table: medians and ranges, and each server against the others."""
    print(
        f"GET /hello, wrk -t{args.threads} -c{args.connections} -d{args.seconds}s; "
        f"median (min-max) of {args.repeat}"
    )
    print(
        f"{'server':<22}{'requests/s':>28}{'p99 ms':>22}{'server CPU us/req':>24}"
        "   vs twisted.web"
    )
    for name in chosen:
        ratios = []
        before = f"{name} @ {args.against}"
        bases = ("twisted.web", "twisted.web, no log", "aiohttp", before)
        for base in bases:
            if base in chosen and base != name:
                ratio = statistics.median(rates[name]) / statistics.median(rates[base])
                p99 = statistics.median(p99s[name]) / statistics.median(p99s[base])
                ratios.append(f"{ratio:.2f}x rate, {p99:.2f}x p99 ({base})")
        print(
            f"{name:<22}{spread(rates[name], 0):>28}{spread(p99s[name], 2):>22}"
            f"{spread(costs[name], 1):>24}   " + "; ".join(ratios)
        )


if __name__ == "__main__":
    main()
