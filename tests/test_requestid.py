"""`oxian_tw._requestid`: ids always ours; a client's trusted only from a proxy."""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from oxian_tw._requestid import TrustedProxies, request_ids


class _Request:
    def __init__(self, host: str, sent: bytes | None) -> None:
        self.requestHeaders = Headers()
        if sent is not None:
            self.requestHeaders.setRawHeaders(b"x-request-id", [sent])
        self._address = (
            IPv6Address("TCP", host, 1) if ":" in host else IPv4Address("TCP", host, 1)
        )

    def getClientAddress(self) -> object:
        return self._address


class RequestIdTests(SynchronousTestCase):
    def test_fresh_and_unique(self) -> None:
        ids = {request_ids(_Request("10.0.0.1", None))[0] for _ in range(1000)}
        self.assertEqual(len(ids), 1000)

    def test_clients_id_kept_beside_ours(self) -> None:
        ours, theirs = request_ids(_Request("10.0.0.1", b"abc-1"))
        self.assertNotEqual(ours, "abc-1")
        self.assertEqual(theirs, "abc-1")

    def test_insane_id_dropped(self) -> None:
        """Spaces, quotes, over 128 characters: not logged at all."""
        for sent in (b"a b", b'a"b', b"x" * 129, b"\xff"):
            with self.subTest(sent=sent):
                self.assertIsNone(request_ids(_Request("10.0.0.1", sent))[1])

    def test_trusted_proxy(self) -> None:
        trusted = TrustedProxies(["10.0.0.0/8", "::1"])
        self.assertEqual(
            request_ids(_Request("10.1.2.3", b"lb-1"), trusted), ("lb-1", None)
        )
        self.assertEqual(request_ids(_Request("::1", b"lb-2"), trusted), ("lb-2", None))
        ours, theirs = request_ids(_Request("192.168.0.1", b"lb-3"), trusted)
        self.assertNotEqual(ours, "lb-3")
        self.assertEqual(theirs, "lb-3")

    def test_trusts(self) -> None:
        trusted = TrustedProxies(["127.0.0.1"])
        self.assertTrue(trusted.trusts("127.0.0.1"))
        self.assertFalse(trusted.trusts("127.0.0.2"))
        self.assertFalse(trusted.trusts("not an address"))
        self.assertFalse(trusted.trusts(None))
        self.assertFalse(TrustedProxies())
