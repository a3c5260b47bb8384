# -*- test-case-name: tests.test_requestid -*-
"""
Request ids (SPEC §3): every request gets a fresh id of ours, echoed as
``X-Request-Id`` and written in every log line about it. A client's own
``X-Request-Id`` is never taken as ours (a client could spoof another
request's id, or make ids collide); it is kept beside ours, as
``client_request_id``, except from a peer in ``--trusted-proxy``, whose id
(a load balancer's) is used as the request's own.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
from collections.abc import Iterable
from typing import Any

__all__ = ("TrustedProxies", "new_request_id", "request_ids")

#: What a client's id may be to be logged or trusted: up to 128 of
#: ``A-Z a-z 0-9 . _ : + = / -``.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+=/-]{1,128}")


class _RequestIds:
    """
    Fresh request ids: a random per-process prefix and a counter, unique
    across processes (a new prefix after ``fork``) and cheap to make.
    """

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._prefix = os.urandom(6).hex() + "-"
        self._counter = itertools.count(1)

    def new(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"


_ids = _RequestIds()

#: A fresh request id (also for what the server answers before a request).
new_request_id = _ids.new


class TrustedProxies:
    """
    The peers (``--trusted-proxy`` networks) whose forwarded headers are
    believed.
    """

    __slots__ = ("_networks",)

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self._networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, host: Any) -> bool:
        """Whether the peer address ``host`` (text) is a trusted proxy."""
        if not self._networks or not isinstance(host, str):
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def client_of(self, request: Any) -> str:
        """
        The client's address: the peer's, or, when the peer is trusted, the
        nearest address its forwarded headers (``Forwarded: for=``, else
        ``X-Forwarded-For``) name that is not itself a trusted proxy.
        """
        peer = getattr(request.getClientAddress(), "host", None)
        host = peer if isinstance(peer, str) else "-"
        if not self._networks or not self.trusts(host):
            return host
        headers = request.requestHeaders
        chain: list[str] = []
        for value in headers.getRawHeaders(b"forwarded") or ():
            for element in value.decode("latin-1").split(","):
                for pair in element.split(";"):
                    name, _, given = pair.strip().partition("=")
                    if name.lower() == "for":
                        chain.append(_forwarded_host(given))
        if not chain:
            for value in headers.getRawHeaders(b"x-forwarded-for") or ():
                chain += [p.strip() for p in value.decode("latin-1").split(",")]
        for address in reversed(chain):
            if address and not self.trusts(address):
                return address
        return host


def _forwarded_host(value: str) -> str:
    """``for=`` of ``Forwarded``: unquoted, without brackets or a port."""
    value = value.strip().strip('"')
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


#: Trusts no one.
NO_PROXIES = TrustedProxies()


def request_ids(
    request: Any, trusted: TrustedProxies = NO_PROXIES
) -> tuple[str, str | None]:
    """
    The id of ``request`` and the client's own ``X-Request-Id`` to log
    beside it (``None``: none, or it became the id): a fresh id, unless
    the peer is a trusted proxy that sent a sane one.
    """
    sent = request.requestHeaders.getRawHeaders(b"x-request-id")
    if not sent:
        return new_request_id(), None
    text: str = sent[-1].decode("latin-1")
    if not _SANE_REQUEST_ID.fullmatch(text):
        return new_request_id(), None
    if trusted and trusted.trusts(getattr(request.getClientAddress(), "host", None)):
        return text, None
    return new_request_id(), text
