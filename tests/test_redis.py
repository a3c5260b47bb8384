"""The hub's Redis connection protocol on a ``StringTransport``, and Redis URLs."""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw.hub._address import RedisAddress, parse_cluster_url, parse_redis_url
from oxian_tw.hub._client import RedisProtocol
from oxian_tw.hub._resp import Push, RespError


class ProtocolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pushes: list[Push] = []
        self.protocol = RedisProtocol(self.pushes.append)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def test_replies_in_order_with_pushes_between(self) -> None:
        """Replies go to the commands in order; pushes go to ``on_push``."""
        first = self.protocol.command(b"GET", "a")
        second = self.protocol.command(b"EVALSHA", "f00", 0)
        self.assertEqual(
            self.transport.value(),
            b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n*3\r\n$7\r\nEVALSHA\r\n$3\r\nf00\r\n$1\r\n0\r\n",
        )
        self.protocol.dataReceived(
            b"$1\r\n1\r\n>3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n-NOSCRIPT x\r\n"
        )
        self.assertEqual(self.successResultOf(first), b"1")
        self.assertEqual(self.pushes, [[b"message", b"c", b"m"]])
        self.assertEqual(self.failureResultOf(second, RespError).value.kind, "NOSCRIPT")

    def test_subscribe_confirmed_by_push(self) -> None:
        """In RESP3 a SUBSCRIBE is answered by a push, not a reply."""
        confirmed = self.protocol.subscribe(b"oxian:hub:0")
        self.assertEqual(
            self.transport.value(), b"*2\r\n$9\r\nSUBSCRIBE\r\n$11\r\noxian:hub:0\r\n"
        )
        self.assertNoResult(confirmed)
        self.protocol.dataReceived(
            b">3\r\n$9\r\nsubscribe\r\n$11\r\noxian:hub:0\r\n:1\r\n"
        )
        self.successResultOf(confirmed)
        self.assertEqual(self.pushes, [])

    def test_subscription_refused_by_an_error_reply(self) -> None:
        """
        A Cluster answers ``SSUBSCRIBE`` for a slot elsewhere with ``MOVED``,
        in the reply order: it fails that subscription, not the next reply.
        """
        refused = self.protocol.subscribe(b"oxian:{a}", sharded=True)
        after = self.protocol.command(b"PING")
        self.protocol.dataReceived(b"-MOVED 15495 127.0.0.1:7002\r\n+PONG\r\n")
        self.assertEqual(self.failureResultOf(refused, RespError).value.kind, "MOVED")
        self.assertEqual(self.successResultOf(after), b"PONG")
        self.assertFalse(self.transport.disconnecting)

    def test_unasked_unsubscription_passed_on(self) -> None:
        """
        ``sunsubscribe`` pushes: the one answering our ``SUNSUBSCRIBE`` is
        the protocol's; one nobody asked for (the slot moved) goes on.
        """
        ours = self.protocol.unsubscribe(b"oxian:{a}", sharded=True)
        self.protocol.dataReceived(
            b">3\r\n$12\r\nsunsubscribe\r\n$9\r\noxian:{b}\r\n:0\r\n"
            b">3\r\n$12\r\nsunsubscribe\r\n$9\r\noxian:{a}\r\n:0\r\n"
        )
        self.successResultOf(ours)
        self.assertEqual(self.pushes, [[b"sunsubscribe", b"oxian:{b}", 0]])

    def test_lost_fails_waiting_and_later_commands(self) -> None:
        waiting = self.protocol.command(b"PING")
        subscribing = self.protocol.subscribe(b"c")
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(waiting, ConnectionLost)
        self.failureResultOf(subscribing, ConnectionLost)
        self.assertIsInstance(self.successResultOf(self.protocol.lost), ConnectionDone)
        self.failureResultOf(self.protocol.command(b"PING"), ConnectionLost)
        self.failureResultOf(self.protocol.subscribe(b"c"), ConnectionLost)

    def test_garbage_or_unasked_reply_drops_connection(self) -> None:
        """The reply order cannot be trusted any more: abort, reconnect."""
        self.protocol.dataReceived(b"+OK\r\n")
        self.assertTrue(self.transport.disconnecting)
        other = RedisProtocol(self.pushes.append)
        transport = StringTransport()
        other.makeConnection(transport)
        other.command(b"PING")
        other.dataReceived(b"?\r\n")
        self.assertTrue(transport.disconnecting)


class UrlTests(SynchronousTestCase):
    def test_forms(self) -> None:
        cases: list[tuple[str, Any]] = [
            ("redis://localhost", RedisAddress("localhost", 6379, 0)),
            ("redis://10.0.0.5:6380/3", RedisAddress("10.0.0.5", 6380, 3)),
            ("redis://[::1]:7000/", RedisAddress("::1", 7000, 0)),
            (
                "redis://:s%40cret@h/1",
                RedisAddress("h", 6379, 1, username=None, password="s@cret"),
            ),
            (
                "redis://app:pw@h",
                RedisAddress("h", 6379, 0, username="app", password="pw"),
            ),
        ]
        for url, address in cases:
            parsed = parse_redis_url(url)
            self.assertEqual(parsed, address, url)
            self.assertEqual(
                (parsed.username, parsed.password), (address.username, address.password)
            )

    def test_password_not_shown(self) -> None:
        address = parse_redis_url("redis://app:pw@h:1/2")
        self.assertEqual(str(address), "redis://h:1/2")
        self.assertNotIn("pw", repr(address))

    def test_refused(self) -> None:
        for url in (
            "http://h",
            "redis://",
            "redis:///0",
            "redis://h:99999",
            "redis://h:x",
            "redis://h/db",
            "redis://h/1?x=1",
            "redis://h?ssl_ca_certs=/ca.pem",
            "rediss://h?ssl_ca_certs=",
            "redis://h:1:2",
            "redis+cluster://h:1",
        ):
            with self.assertRaises(ValueError, msg=url):
                parse_redis_url(url)

    def test_tls(self) -> None:
        """``rediss://`` is TLS, trusting the system's CAs or the one given."""
        address = parse_redis_url("rediss://:pw@cache.example:6380/2")
        self.assertEqual(
            (address.host, address.port, address.db, address.tls, address.ca),
            ("cache.example", 6380, 2, True, None),
        )
        self.assertEqual(str(address), "rediss://cache.example:6380/2")
        address = parse_redis_url("rediss://h?ssl_ca_certs=/etc/ca.pem")
        self.assertEqual(address.ca, "/etc/ca.pem")


class ClusterUrlTests(SynchronousTestCase):
    def test_forms(self) -> None:
        """Seeds in order (repeats once), credentials, TLS; no /db."""
        address = parse_cluster_url(
            "redis+cluster://app:s%40cret@h1:7000,10.0.0.2:7001,[::1]:7002,h1:7000/"
        )
        self.assertEqual(
            address.seeds, (("h1", 7000), ("10.0.0.2", 7001), ("::1", 7002))
        )
        self.assertEqual((address.username, address.password), ("app", "s@cret"))
        self.assertFalse(address.tls)
        self.assertEqual(
            str(address), "redis+cluster://h1:7000,10.0.0.2:7001,[::1]:7002"
        )
        self.assertNotIn("cret", repr(address))
        node = address.node("10.0.0.9", 7005)
        self.assertEqual((node.host, node.port, node.db), ("10.0.0.9", 7005, 0))
        self.assertEqual(node.password, "s@cret")
        secure = parse_cluster_url("rediss+cluster://h:7000?ssl_ca_certs=/ca.pem")
        self.assertEqual((secure.tls, secure.ca), (True, "/ca.pem"))
        self.assertTrue(secure.node("h", 7001).tls)

    def test_refused(self) -> None:
        for url in (
            "redis://h:7000",
            "redis+cluster://",
            "redis+cluster://h",
            "redis+cluster://h:7000,",
            "redis+cluster://h:7000/1",
            "redis+cluster://h:70000",
            "redis+cluster://h:7000?x=1",
            "redis+cluster://h:7000?ssl_ca_certs=/ca.pem",
        ):
            with self.assertRaises(ValueError, msg=url):
                parse_cluster_url(url)
