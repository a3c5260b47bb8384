"""
Compressed streams (SPEC §17) end to end: the example app under
``twistd -n oxian --compress``, its ``/events`` stream (a counter event a
second) read by curl ``--compressed``, by httpx in each coding, and by
headless Chromium's EventSource (over http and https, in what it offers:
gzip and, in current Chromium, zstd over http; brotli and zstd over
https). Each reads the events one by one as
they are sent: the second arrives about a second after the first, never
together with it (a compressor holding events back would deliver them at
once).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from oxian_tw._compression import negotiate

from .helpers import (
    TwistdProcess,
    assert_clean_exit,
    chromium_and_playwright,
    launch_chromium,
    skip_unless,
    tls_listener,
)

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples")
#: Events of ``/events`` are a second apart: arriving closer than this,
#: two would have been held back and sent together.
APART = 0.5


class Server:
    def start(self, test: SynchronousTestCase, **listener: str) -> TwistdProcess:
        work = os.path.abspath(test.mktemp())
        os.makedirs(work)
        server = TwistdProcess(
            "--routes",
            os.path.join(EXAMPLES, "routes"),
            "--compress",
            env={"OXIAN_EXAMPLES_DB": os.path.join(work, "examples.sqlite3")},
            **listener,
        )
        test.addCleanup(assert_clean_exit, test, server)
        return server


class ClientTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = Server().start(self)
        self.url = f"http://127.0.0.1:{self.server.port}/events"

    def test_curl(self) -> None:
        """curl --compressed (offering zstd, br, gzip): zstd, event by event."""
        curl = shutil.which("curl")
        skip_unless(curl is not None, "curl is not installed (apt-get install curl)")
        assert curl is not None
        process = subprocess.Popen(
            [curl, "-sS", "-N", "--compressed", "-D", "-", self.url],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        assert process.stdout is not None
        head, arrivals = [], []
        for line in process.stdout:
            if not arrivals and line.strip() and not line.startswith("event:"):
                head.append(line.lower())
            if line.startswith("event: counter"):
                arrivals.append(time.monotonic())
                if len(arrivals) == 2:
                    break
        self.assertIn("content-encoding: zstd\n", head)
        self.assertGreater(arrivals[1] - arrivals[0], APART)

    def test_httpx(self) -> None:
        """httpx in each coding it decodes: events one by one."""
        import httpx

        for coding in ("gzip", "br", "zstd"):
            with self.subTest(coding=coding):
                with httpx.stream(
                    "GET", self.url, headers={"Accept-Encoding": coding}, timeout=30
                ) as response:
                    self.assertEqual(response.headers["content-encoding"], coding)
                    arrivals = []
                    for line in response.iter_lines():
                        if line.startswith("event: counter"):
                            arrivals.append(time.monotonic())
                            if len(arrivals) == 2:
                                break
                self.assertGreater(arrivals[1] - arrivals[0], APART)


class ChromiumTests(SynchronousTestCase):
    """EventSource in headless Chromium, decoding what the server compressed."""

    PAGE = """async () => {
        const source = new EventSource("/events");
        const times = [];
        await new Promise((done) => source.addEventListener("counter", (e) => {
            times.push({at: performance.now(), count: JSON.parse(e.data).count});
            if (times.length === 2) done();
        }));
        source.close();
        return times;
    }"""

    def setUp(self) -> None:
        self.chromium, self.sync_playwright = chromium_and_playwright()

    def events(
        self, url: str, only: str | None = None
    ) -> tuple[str, str, list[dict[str, Any]]]:
        """
        What Chromium offered for ``/events``, the coding it got, and its
        first two events' arrivals; with ``only``, Chromium offers that
        coding alone (its ``Accept-Encoding`` replaced through DevTools).
        """
        with self.sync_playwright() as playwright:
            browser = launch_chromium(
                playwright, self.chromium, "--ignore-certificate-errors"
            )
            try:
                page = browser.new_page(
                    extra_http_headers={} if only is None else {"Accept-Encoding": only}
                )
                page.set_default_timeout(20_000)
                page.goto(f"{url}/favicon.ico")
                with page.expect_response(lambda r: r.url.endswith("/events")) as got:
                    times = page.evaluate(self.PAGE)
                response = got.value
                offered = response.request.all_headers().get("accept-encoding", "")
                return offered, response.headers.get("content-encoding", ""), times
            finally:
                browser.close()

    def check(self, times: list[dict[str, Any]]) -> None:
        self.assertEqual([t["count"] for t in times], [1, 2])
        self.assertGreater(times[1]["at"] - times[0]["at"], APART * 1000)

    def test_over_http(self) -> None:
        """
        Over http, what Chromium offers (gzip always; this Chromium offers
        zstd too): the server's first choice of it.
        """
        server = Server().start(self)
        offered, coding, times = self.events(f"http://127.0.0.1:{server.port}")
        self.assertIn("gzip", offered)
        self.assertEqual(coding, negotiate([offered.encode()]))
        self.check(times)

    def test_each_coding(self) -> None:
        """
        Chromium decodes each coding event by event when it is the one
        offered: gzip over http, and gzip, br and zstd over https (HTTP/2).
        """
        server = Server().start(self)
        _, coding, times = self.events(f"http://127.0.0.1:{server.port}", "gzip")
        self.assertEqual(coding, "gzip")
        self.check(times)
        work = os.path.abspath(self.mktemp())
        tls = Server().start(self, **tls_listener(os.path.join(work, "tls")))
        for only in ("gzip", "br", "zstd"):
            with self.subTest(coding=only):
                _, coding, times = self.events(f"https://127.0.0.1:{tls.port}", only)
                self.assertEqual(coding, only)
                self.check(times)

    def test_brotli_or_zstd_over_https(self) -> None:
        work = os.path.abspath(self.mktemp())
        server = Server().start(self, **tls_listener(os.path.join(work, "tls")))
        offered, coding, times = self.events(f"https://127.0.0.1:{server.port}")
        self.assertIn("br", offered)
        self.assertIn(coding, ("zstd", "br"))
        self.assertEqual(coding, negotiate([offered.encode()]))
        self.check(times)
