# -*- test-case-name: tests.test_host -*-
"""
The ``Host`` rule (RFC 9112 §3.2, RFC 3986 §3.2.2), sans I/O.

An HTTP/1.1 request has exactly one ``Host``; HTTP/1.0 and HTTP/2 requests
may have none (HTTP/2 carries ``:authority``, which Twisted hands on as
``Host``; a request carrying both must give the same value). A value is a
host and an optional port: a bracketed IPv6 literal, or a name of dot-
separated labels of letters, digits, ``-`` and ``_`` (1–63 each, 253 in
all, an IPv4 address being one of them), then ``:`` and at most five
digits up to 65535. Anything else — empty labels, non-ASCII bytes, spaces —
is a 400: the value reaches ``ctx.request.url`` and absolute redirects.

A server sees the same few ``Host`` values over and over: values found
valid are remembered (at most `REMEMBERED_HOSTS`, forgotten all at once
past that, so a client sending endless distinct names costs a bounded
set), and a remembered value costs one set lookup.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["host_problem"]

_LABEL = re.compile(rb"[A-Za-z0-9_-]{1,63}\Z")
_PORT = re.compile(rb"[0-9]{0,5}\Z")

#: Valid ``Host`` values remembered at most.
REMEMBERED_HOSTS = 1024
_valid_hosts: set[bytes] = set()


def host_problem(values: list[bytes] | None, version: bytes) -> str | None:
    """
    What is wrong with a request's ``Host`` header values, or ``None``.

    :param values: every ``Host`` value the request carried, or ``None``.
    :param version: the request's version, e.g. ``b"HTTP/1.1"``.
    """
    if values and len(values) == 1 and values[0] in _valid_hosts:
        return None
    if not values:
        if version == b"HTTP/1.1":
            return "Missing Host header"
        return None
    if len(values) > 1 and (version != b"HTTP/2" or len(set(values)) > 1):
        return "More than one Host header"
    if not _valid(values[0]):
        return "Invalid Host header"
    if len(_valid_hosts) >= REMEMBERED_HOSTS:
        _valid_hosts.clear()
    _valid_hosts.add(values[0])
    return None


def _valid(value: bytes) -> bool:
    if value.startswith(b"["):
        end = value.find(b"]")
        if end < 0:
            return False
        try:
            ipaddress.IPv6Address(value[1:end].decode("ascii"))
        except ValueError:
            return False
        rest = value[end + 1 :]
        if not rest:
            return True
        return rest.startswith(b":") and _valid_port(rest[1:])
    name, colon, port = value.partition(b":")
    if colon and not _valid_port(port):
        return False
    if name.endswith(b"."):
        name = name[:-1]
    if not name or len(name) > 253:
        return False
    return all(_LABEL.match(label) for label in name.split(b"."))


def _valid_port(port: bytes) -> bool:
    return _PORT.match(port) is not None and (not port or int(port) <= 65535)
