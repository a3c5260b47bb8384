"""
Saying what is served (issue 18): each listener logs a URL to open once
bound, the app logs its routes, hub and limits when its service starts,
and Twisted's "Starting factory <... at 0x...>" lines stay out.
"""

from __future__ import annotations

import errno
import socket

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactor
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase

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


class AnyInterfaceTests(SynchronousTestCase):
    """``any:PORT`` (the default): IPv4, and IPv6 when the host has it."""

    def setUp(self) -> None:
        self.events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.opened: list[tuple[int, int]] = []

    def text(self) -> str:
        from twisted.logger import formatEvent

        return "\n".join(formatEvent(e) for e in self.events)

    def listener(self, reactor: object, ipv6: object) -> Listener:
        factory = object()
        listener = Listener("any:8080", factory, reactor)

        def open_ipv6(port: int, backlog: int) -> socket.socket:
            self.opened.append((port, backlog))
            if isinstance(ipv6, OSError):
                raise ipv6
            assert isinstance(ipv6, socket.socket)
            return ipv6

        listener.open_ipv6 = open_ipv6  # type: ignore[method-assign,assignment]
        return listener

    def test_both(self) -> None:
        """IPv4 through the reactor, then IPv6 on the same port, adopted."""
        reactor = MemoryReactor()
        ipv6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.addCleanup(ipv6.close)
        fileno = ipv6.fileno()
        listener = self.listener(reactor, ipv6)
        listener.startService()
        ((port, factory, backlog, interface),) = reactor.tcpServers
        self.assertEqual((port, backlog, interface), (8080, 1024, ""))
        # MemoryReactor's port is 8080 (what the kernel gave for port 0).
        self.assertEqual(self.opened, [(8080, 1024)])
        ((adopted, family, adopted_factory),) = reactor.adoptedPorts
        self.assertEqual((adopted, family), (fileno, socket.AF_INET6))
        self.assertIs(adopted_factory, factory)
        # Our socket is closed: the reactor keeps its own duplicate.
        self.assertEqual(ipv6.fileno(), -1)
        self.assertIn(
            "listening on http://localhost:8080/ (any:8080: IPv4 and IPv6)",
            self.text(),
        )
        self.assertIsNotNone(listener.ipv6_port)
        self.successResultOf(listener.stopService())
        self.assertIsNone(listener.ipv6_port)

    def test_no_ipv6(self) -> None:
        """A host without IPv6: IPv4 alone, said in the line, no failure."""
        reactor = MemoryReactor()
        listener = self.listener(
            reactor, OSError(errno.EAFNOSUPPORT, "Address family not supported")
        )
        listener.fatal = True
        listener.startService()
        self.assertEqual(len(reactor.tcpServers), 1)
        self.assertEqual(reactor.adoptedPorts, [])
        self.assertIn(
            "listening on http://localhost:8080/ (any:8080: IPv4 only, no IPv6 "
            "port 8080 here (address family not supported))",
            self.text(),
        )
        self.assertIsNotNone(listener.port)
        self.assertIsNone(listener.ipv6_port)

    def test_reactor_without_adoption(self) -> None:
        """A reactor that cannot adopt a socket: IPv4 alone, said."""
        from twisted.internet.interfaces import IReactorTCP
        from zope.interface import implementer

        memory = MemoryReactor()

        @implementer(IReactorTCP)
        class TCPOnly:
            def listenTCP(self, *args: object, **kwargs: object) -> object:
                return memory.listenTCP(*args, **kwargs)  # type: ignore[arg-type]

        listener = self.listener(TCPOnly(), OSError("unused"))
        listener.startService()
        self.assertEqual(self.opened, [])
        self.assertIn("IPv4 only, this reactor cannot adopt", self.text())

    def test_bad_any(self) -> None:
        """``any:`` with a non-port is one fatal line."""
        listener = Listener("any:http", object(), MemoryReactor())
        listener.fatal = True
        exit = self.assertRaises(SystemExit, listener.privilegedStartService)
        self.assertIn("cannot listen on any:http", str(exit.code))

    def test_real_socket(self) -> None:
        """`ipv6_socket` listens on IPv6 alone (``IPV6_V6ONLY``), non-blocking."""
        from oxian_tw._listen import ipv6_socket

        if not socket.has_ipv6:
            raise SkipTest("this Python has no IPv6")
        try:
            sock = ipv6_socket(0, 5)
        except OSError as exc:
            raise SkipTest(f"no IPv6 here: {exc}") from None
        self.addCleanup(sock.close)
        self.assertEqual(sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY), 1)
        self.assertFalse(sock.getblocking())
        self.assertEqual(sock.getsockname()[0], "::")


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
