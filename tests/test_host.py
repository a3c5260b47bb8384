"""
Tests for `oxian_tw._host`: which ``Host`` values a request may carry.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from oxian_tw import _host
from oxian_tw._host import host_problem


class HostRuleTests(SynchronousTestCase):
    """`host_problem` by RFC 9112 §3.2 and RFC 3986 §3.2.2."""

    def test_good_values(self) -> None:
        """Names, IPv4, IPv6 literals and ports within range are accepted."""
        for value in [
            b"localhost",
            b"localhost:8080",
            b"example.com",
            b"example.com.",
            b"my_service-1.internal:80",
            b"127.0.0.1:65535",
            b"[::1]",
            b"[::1]:8443",
            b"[2001:db8::7]:1",
            b"a" * 63 + b".com",
            b"host:",
        ]:
            self.assertIsNone(host_problem([value], b"HTTP/1.1"), value)

    def test_bad_values(self) -> None:
        """Empty labels, long labels, non-ASCII, bad ports and literals: 400."""
        for value in [
            b"",
            b"a..b",
            b".a",
            b"a" * 64 + b".com",
            (b"a" * 60 + b".") * 5,
            b"\xff",
            b"caf\xc3\xa9.example",
            b"a b",
            b"a/b",
            b"a@b",
            b"host:65536",
            b"host:80:80",
            b"host:\xb2",
            b"host:123456",
            b"[::1",
            b"[nope]",
            b"[::1]x",
            b"[::1]:99999",
        ]:
            self.assertEqual(
                host_problem([value], b"HTTP/1.1"), "Invalid Host header", value
            )

    def test_missing(self) -> None:
        """Only HTTP/1.1 must carry a ``Host``."""
        self.assertEqual(host_problem(None, b"HTTP/1.1"), "Missing Host header")
        self.assertEqual(host_problem([], b"HTTP/1.1"), "Missing Host header")
        self.assertIsNone(host_problem(None, b"HTTP/1.0"))
        self.assertIsNone(host_problem(None, b"HTTP/2"))

    def test_several(self) -> None:
        """
        Two values are a 400, except over HTTP/2 when ``:authority`` and
        ``Host`` agree.
        """
        for version in [b"HTTP/1.1", b"HTTP/1.0"]:
            self.assertEqual(
                host_problem([b"a", b"a"], version), "More than one Host header"
            )
        self.assertEqual(
            host_problem([b"a", b"b"], b"HTTP/2"), "More than one Host header"
        )
        self.assertIsNone(host_problem([b"a", b"a"], b"HTTP/2"))


class RememberedHostsTests(SynchronousTestCase):
    """Valid values are remembered, in a bounded set; bad ones never."""

    def setUp(self) -> None:
        self.patch(_host, "_valid_hosts", set())
        self.patch(_host, "REMEMBERED_HOSTS", 4)

    def test_remembered(self) -> None:
        self.assertIsNone(host_problem([b"example.com"], b"HTTP/1.1"))
        self.assertIn(b"example.com", _host._valid_hosts)
        self.assertIsNone(host_problem([b"example.com"], b"HTTP/1.1"))
        self.assertEqual(host_problem([b"a..b"], b"HTTP/1.1"), "Invalid Host header")
        self.assertNotIn(b"a..b", _host._valid_hosts)

    def test_rules_still_apply_to_remembered_values(self) -> None:
        """Two values, even remembered ones, are still two Host headers."""
        host_problem([b"h"], b"HTTP/1.1")
        self.assertEqual(
            host_problem([b"h", b"h"], b"HTTP/1.1"), "More than one Host header"
        )

    def test_bounded(self) -> None:
        for n in range(20):
            self.assertIsNone(host_problem([b"h%d" % n], b"HTTP/1.1"))
            self.assertLessEqual(len(_host._valid_hosts), 4)
