"""
How much parsing HTTP/1.1 in C would give (issue 33's named lever), before
building it: the same app served with Twisted's parser and with a spike
that feeds ``httptools`` (llhttp) inside ``OxianChannel`` — bodiless
``GET`` only, no pipelining rules, not shipped — and aiohttp beside them,
``wrk -t2 -c50 -d10s`` on ``GET /hello`` with the access log off. A script
that prints numbers, not a test; needs ``pip install httptools aiohttp``.

    python bench/parser_spike.py [--repeat 3] [--seconds 10]

Every server is a plain ``python -c`` process on CPU 0 (``listenTCP``
with the app's site: the connection's deadlines and limits included),
wrk on CPU 1; rounds interleave the three; median (min-max).
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys

from _common import TOP, start
from plain_get import AIOHTTP, wrk

SERVE = """
import sys

import httptools
from twisted.internet import reactor

from oxian_tw import OxianApp
from oxian_tw._channel import OxianChannel


class SpikeChannel(OxianChannel):
    # Bodiless requests only: enough to time the parser, nothing more.
    def connectionMade(self):
        super().connectionMade()
        self._parser = httptools.HttpRequestParser(self)
        self._fields, self._url, self._buffer = [], b"", []

    def dataReceived(self, data):
        if self._handlingRequest:
            self._buffer.append(data)
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self.answer_bad_request()

    def on_url(self, url):
        self._url += url

    def on_header(self, name, value):
        self._fields.append((name, value))

    def on_headers_complete(self):
        request = self.requestFactory(self, len(self.requests))
        self.requests.append(request)
        for name, value in self._fields:
            request.requestHeaders.addRawHeader(name, value)
        self._version = b"HTTP/" + self._parser.get_http_version().encode()
        self._command, self._path = self._parser.get_method(), self._url
        self.persistent = self.checkPersistence(request, self._version)
        request.gotLength(0)

    def on_message_complete(self):
        self._handlingRequest = True
        self._fields, self._url = [], b""
        self.requests[-1].requestReceived(self._command, self._path, self._version)

    def requestDone(self, request):
        del self.requests[0]
        if not self.persistent:
            self.loseConnection()
            return
        self._handlingRequest = False
        buffered, self._buffer = self._buffer, []
        for data in buffered:
            self.dataReceived(data)


app = OxianApp(sys.argv[1], config={"access-log": "off"})
site = app.site()
if sys.argv[2] == "httptools":
    site.protocol = SpikeChannel
port = reactor.listenTCP(0, site, interface="127.0.0.1", backlog=1024)
print("listening on", port.getHost().port, flush=True)
reactor.run()
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    routes = f"{TOP}/bench/routes"
    servers = {
        "oxian_tw, Twisted's parser": [sys.executable, "-c", SERVE, routes, "twisted"],
        "oxian_tw, httptools spike": [sys.executable, "-c", SERVE, routes, "httptools"],
        "aiohttp": [sys.executable, "-c", AIOHTTP],
    }
    rates: dict[str, list[float]] = {name: [] for name in servers}
    for _ in range(args.repeat):
        for name, command in servers.items():
            process, port = start(command, r"listening on (\d+)")
            try:
                wrk(port, "/hello", 2, 50, 2)
                rates[name].append(wrk(port, "/hello", args.seconds, 50, 2)[0])
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
    print(
        f"GET /hello, wrk -t2 -c50 -d{args.seconds}s; median (min-max) of {args.repeat}"
    )
    base = statistics.median(rates["aiohttp"])
    for name, values in rates.items():
        median = statistics.median(values)
        print(
            f"{name:<30}{median:>10,.0f} ({min(values):,.0f}-{max(values):,.0f})"
            f"   {median / base:.2f}x aiohttp"
        )


if __name__ == "__main__":
    main()
