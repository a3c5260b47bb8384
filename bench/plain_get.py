"""
Requests per second for a plain JSON ``GET``: ``twistd oxian`` against a
plain ``twisted.web`` resource doing the same work, measured with ``wrk``
(Debian's ``wrk``) in the same run. A script that prints numbers, not a test.

    python bench/plain_get.py [--seconds 10] [--connections 50]

A third server, "oxian_tw + pipeline", serves the same route below a
``dependencies.py`` (a singleton), a ``middleware.py`` (adds ``ctx.user``)
and an ``interceptors.py`` (``before_run`` and ``after_run``): the cost of
the pipeline per request.

Each server is pinned to CPU 0 and wrk to CPU 1 when ``taskset`` exists.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap

from _common import oxian_command, pinned, start

PLAIN_SERVER = """
import sys
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

class Hello(Resource):
    isLeaf = True
    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        return b'{"hello":"world"}'

port = reactor.listenTCP(0, Site(Hello()), interface="127.0.0.1")
print("listening on", port.getHost().port, flush=True)
reactor.run()
"""

ROUTE = """
def GET(data, ctx):
    return {"hello": "world"}
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


def wrk(port: int, path: str, seconds: int, connections: int) -> float:
    out = subprocess.run(
        pinned(
            1,
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{seconds}s",
                f"http://127.0.0.1:{port}{path}",
            ],
        ),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("needs wrk (apt-get install wrk)")
    servers = {
        "plain twisted.web": (
            [sys.executable, "-c", PLAIN_SERVER],
            r"listening on (\d+)",
        ),
        "oxian_tw": oxian_command(tree({"hello.py": ROUTE})),
        "oxian_tw + pipeline": oxian_command(tree(PIPELINE)),
    }
    results = {}
    for name, (command, pattern) in servers.items():
        process, port = start(command, pattern)
        try:
            wrk(port, "/hello", 2, args.connections)  # warm-up
            results[name] = wrk(port, "/hello", args.seconds, args.connections)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    base = results["plain twisted.web"]
    for name, rps in results.items():
        print(f"{name:<22} {rps:>10,.0f} req/s   {rps / base:.2f}x plain twisted.web")


if __name__ == "__main__":
    main()
