"""
Saying what is served (issue 18): each listener logs a URL to open once
bound, the app logs its routes, hub and limits when its service starts,
and Twisted's "Starting factory <... at 0x...>" lines stay out.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactor
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw._listen import Listener, url_of
from oxian_tw._site import OxianSite

from .helpers import RoutesTestCase, make_tree


class UrlTests(SynchronousTestCase):
    def test_urls(self) -> None:
        ipv4 = IPv4Address("TCP", "127.0.0.1", 8080)
        self.assertEqual(url_of("tcp:8080", ipv4), "http://127.0.0.1:8080/")
        self.assertEqual(url_of("8080", ipv4), "http://127.0.0.1:8080/")
        self.assertEqual(url_of("ssl:8443:k=v", ipv4), "https://127.0.0.1:8080/")
        anywhere = IPv4Address("TCP", "0.0.0.0", 80)
        self.assertEqual(url_of("tcp:80", anywhere), "http://localhost:80/")
        ipv6 = IPv6Address("TCP", "::1", 8080)
        self.assertEqual(url_of("tcp6:8080", ipv6), "http://[::1]:8080/")
        unix = UNIXAddress(b"/run/app.sock")
        self.assertEqual(url_of("unix:/run/app.sock", unix), "unix:/run/app.sock")
        self.assertEqual(
            url_of("systemd:domain=INET:index=0", object()),
            "systemd:domain=INET:index=0",
        )


class ListenerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def text(self) -> str:
        from twisted.logger import formatEvent

        return "\n".join(formatEvent(e) for e in self.events)

    def test_listens_logs_and_stops(self) -> None:
        reactor = MemoryReactor()
        factory = object()
        listener = Listener("tcp:8080:interface=127.0.0.1", factory, reactor)
        listener.startService()
        ((port, got, backlog, interface),) = reactor.tcpServers
        self.assertEqual(
            (port, got, backlog, interface), (8080, factory, 1024, "127.0.0.1")
        )
        # MemoryReactor's port says 0.0.0.0: "every interface" is named
        # localhost, a URL one can open.
        self.assertIn(
            "oxian_tw: listening on http://localhost:8080/ "
            "(tcp:8080:interface=127.0.0.1)",
            self.text(),
        )
        self.assertIsNotNone(listener.port)
        self.successResultOf(listener.stopService())
        self.assertIsNone(listener.port)

    def test_site_is_quiet(self) -> None:
        self.assertFalse(OxianSite.noisy)

    def taken(self) -> MemoryReactor:
        reactor = MemoryReactor()

        def refuse(*args: object, **kwargs: object) -> None:
            raise CannotListenError(
                "127.0.0.1", 8080, OSError(98, "Address already in use")
            )

        reactor.listenTCP = refuse  # type: ignore[method-assign]
        return reactor

    def test_taken_port_logged(self) -> None:
        """An embedded app's listener logs one line, no traceback."""
        listener = Listener("tcp:8080", object(), self.taken())
        listener.startService()
        self.assertIn(
            "oxian_tw: cannot listen on tcp:8080: address already in use", self.text()
        )
        self.assertFalse([e for e in self.events if "log_failure" in e])

    def test_taken_port_is_fatal_for_twistd(self) -> None:
        """``twistd oxian``'s listeners end the process: status 1, one line."""
        listener = Listener("tcp:8080", object(), self.taken())
        listener.fatal = True
        exit = self.assertRaises(SystemExit, listener.privilegedStartService)
        self.assertEqual(
            exit.code, "twistd oxian: cannot listen on tcp:8080: address already in use"
        )

    def test_tap_marks_its_listeners_fatal(self) -> None:
        from oxian_tw.tap import Options, makeService

        options = Options()
        root = make_tree(self.mktemp(), {"index.py": "def GET(data, ctx):\n    pass\n"})
        options.parseOptions(["--routes", root, "--listen", "tcp:0"])
        service = makeService(options)
        listeners = [s for s in service if isinstance(s, Listener)]
        self.assertTrue(listeners)
        self.assertTrue(all(listener.fatal for listener in listeners))


class SummaryTests(RoutesTestCase):
    routes = {"index.py": "def GET(data, ctx):\n    return 1\n"}
    config = {"hub": "redis://user:secret@10.0.0.7:6379/2", "max-streams": 9}

    def test_summary(self) -> None:
        self.app._log_summary()
        text = self.log_text()
        self.assertIn("1 routes from ", text)
        self.assertIn("hub redis://10.0.0.7:6379/2", text)
        self.assertNotIn("secret", text)
        self.assertIn("9 streams", text)
