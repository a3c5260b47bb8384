"""
A Klein app that mounts the example file routes under ``/api/`` and serves
its own routes with oxian_tw's streams (SPEC §13)::

    pip install ".[klein]" && python examples/klein_app.py --listen tcp:8080

- ``GET /api/...``: the file routes of ``examples/routes`` (``/api/users/1``).
- ``GET /ticks``: Server-Sent Events from the hub channel ``ticks``
  (heartbeats, the byte budget, ``Last-Event-ID`` resume, the registry and
  the graceful drain, as for a file route).
- ``POST /ticks``: publish a tick on that channel.
- ``GET /numbers.csv?rows=N``: a streamed download at the client's pace.
- ``GET /files/<name>``: a file of ``examples/uploads`` (``Range``, ``ETag``).

SIGTERM (or Ctrl-C) drains: streams get a ``retry`` and end, responses in
flight finish and leave the socket, then the process exits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from klein import Klein
from twisted.application.service import IService
from twisted.web.server import NOT_DONE_YET

from oxian_tw import OxianApp

HERE = os.path.dirname(os.path.abspath(__file__))
ROUTES = os.path.join(HERE, "routes")
UPLOADS = os.path.join(HERE, "uploads")


# --8<-- [start:make_app]
def make_app(
    reactor: Any = None, dependencies: dict[str, Any] | None = None
) -> tuple[Klein, OxianApp]:
    """The Klein app and the oxian_tw app it hands off to."""
    web = Klein()
    ox = OxianApp(ROUTES, reactor=reactor, dependencies=dependencies)

    @web.route("/api/", branch=True)
    def api(request: Any) -> Any:
        # The file routes, mounted under /api (the prefix is stripped).
        return ox.resource()

    @web.route("/ticks", methods=["GET"])
    def ticks(request: Any) -> Any:
        ox.response(request).sse(channels=["ticks"])
        return NOT_DONE_YET  # the stream finishes the request

    @web.route("/ticks", methods=["POST"])
    async def tick(request: Any) -> bytes:
        count = ox.hub.stats().published + 1
        event_id = await ox.hub.publish("ticks", {"tick": count})
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"id": event_id}).encode()

    @web.route("/numbers.csv")
    async def numbers(request: Any) -> Any:
        rows = int(request.args.get(b"rows", [b"1000"])[0])
        stream = ox.response(request).stream(
            headers={"Content-Type": "text/csv; charset=utf-8"}
        )
        await stream.write("n,square\n")
        for n in range(1, rows + 1):
            # Awaited: a client that reads slowly pauses this loop.
            await stream.write(f"{n},{n * n}\n")
        stream.close()
        return NOT_DONE_YET

    @web.route("/files/<name>")
    def files(request: Any, name: str) -> Any:
        ox.response(request).send_file(name, root=UPLOADS)
        return NOT_DONE_YET

    return web, ox


# --8<-- [end:make_app]


def make_service(listen: list[str], reactor: Any = None) -> IService:
    """The Klein app served on ``listen``; stopping it drains the streams."""
    web, ox = make_app(reactor)
    return ox.service(listen, root=web.resource())


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM or Ctrl-C."""
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    parser = argparse.ArgumentParser(prog="python examples/klein_app.py")
    parser.add_argument("--listen", action="append", default=None)
    args = parser.parse_args(argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    service = make_service(args.listen or ["tcp:8080"], reactor)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


if __name__ == "__main__":
    main()
