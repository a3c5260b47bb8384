# -*- test-case-name: tests.test_redis -*-
"""
Where the hub's Redis is, from ``--hub``: one Redis
(``redis://[[user]:password@]host[:port][/db]``) or a Cluster
(``redis+cluster://[[user]:password@]host:port[,host:port...]``, the rest
of its nodes discovered); ``rediss`` for TLS in both, as managed Redis
needs, with ``?ssl_ca_certs=PATH`` (redis-py's name) to trust a private
CA instead of the system's.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit

import attrs

from .._text import is_decimal

__all__ = (
    "ClusterAddress",
    "RedisAddress",
    "parse_cluster_url",
    "parse_redis_url",
)

DEFAULT_PORT = 6379


@attrs.frozen
class RedisAddress:
    """One Redis server (or one node of a Cluster), and how to log in."""

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    username: str | None = attrs.field(default=None, repr=False)
    password: str | None = attrs.field(default=None, repr=False)
    #: Connect with TLS (``rediss://``).
    tls: bool = False
    #: A PEM file of the CA certificates to trust (``None``: the system's).
    ca: str | None = None

    def __str__(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{_host(self.host)}:{self.port}/{self.db}"

    def node(self, host: str, port: int) -> RedisAddress:
        """Another node of the same Cluster, with the same login and TLS."""
        return attrs.evolve(self, host=host, port=port, db=0)


@attrs.frozen
class ClusterAddress:
    """A Redis Cluster: the nodes to ask for the rest, and how to log in."""

    #: ``(host, port)`` of the nodes given; the others are discovered.
    seeds: tuple[tuple[str, int], ...]
    username: str | None = attrs.field(default=None, repr=False)
    password: str | None = attrs.field(default=None, repr=False)
    tls: bool = False
    ca: str | None = None

    def __str__(self) -> str:
        scheme = "rediss+cluster" if self.tls else "redis+cluster"
        nodes = ",".join(f"{_host(h)}:{p}" for h, p in self.seeds)
        return f"{scheme}://{nodes}"

    def node(self, host: str, port: int) -> RedisAddress:
        """The address of one of its nodes."""
        return RedisAddress(
            host,
            port,
            0,
            username=self.username,
            password=self.password,
            tls=self.tls,
            ca=self.ca,
        )


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _login(userinfo: str) -> tuple[str | None, str | None]:
    if not userinfo:
        return None, None
    user, colon, password = userinfo.partition(":")
    return (unquote(user) or None), (unquote(password) if colon else None)


def _ca(query: str) -> str | None:
    if not query:
        return None
    pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False)
    names = {name for name, _ in pairs}
    if names != {"ssl_ca_certs"} or len(pairs) != 1 or not pairs[0][1]:
        raise ValueError("the only query a Redis URL takes is ?ssl_ca_certs=PATH")
    return pairs[0][1]


def _port(text: str, default: int | None) -> int:
    if not text:
        if default is None:
            raise ValueError("each node of a Cluster needs its port")
        return default
    if not is_decimal(text) or not 0 < int(text) < 65536:
        raise ValueError("the port is a number from 1 to 65535")
    return int(text)


def _hostport(text: str, default: int | None) -> tuple[str, int]:
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"not a host[:port]: {text!r}")
        port = rest[1:]
    else:
        host, _, port = text.partition(":")
        if ":" in port:
            raise ValueError(f"an IPv6 address goes in brackets: {text!r}")
    if not host:
        raise ValueError("a host is needed")
    return host, _port(port, default)


def parse_redis_url(url: str) -> RedisAddress:
    """
    :raises ValueError: for anything but ``redis[s]://host[:port][/db]``,
        with optional ``user:password@`` or ``:password@`` and, with TLS,
        ``?ssl_ca_certs=PATH``.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.netloc:
        raise ValueError("expected redis://host[:port][/db] (rediss:// for TLS)")
    if parts.fragment:
        raise ValueError("a Redis URL has no fragment")
    tls = parts.scheme == "rediss"
    ca = _ca(parts.query)
    if ca is not None and not tls:
        raise ValueError("ssl_ca_certs goes with rediss:// (TLS)")
    userinfo, _, hostport = parts.netloc.rpartition("@")
    username, password = _login(userinfo)
    host, port = _hostport(hostport, DEFAULT_PORT)
    path = parts.path.strip("/")
    if path and not is_decimal(path):
        raise ValueError("the database after the / is a number")
    return RedisAddress(
        host=host,
        port=port,
        db=int(path or 0),
        username=username,
        password=password,
        tls=tls,
        ca=ca,
    )


def parse_cluster_url(url: str) -> ClusterAddress:
    """
    :raises ValueError: for anything but
        ``redis[s]+cluster://host:port[,host:port...]`` (credentials and
        ``?ssl_ca_certs=PATH`` as in `parse_redis_url`; no ``/db``: a
        Cluster has only database 0).
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("redis+cluster", "rediss+cluster"):
        raise ValueError("expected redis+cluster://host:port[,host:port...]")
    tls = scheme == "rediss+cluster"
    rest, _, fragment = rest.partition("#")
    if fragment:
        raise ValueError("a Redis URL has no fragment")
    rest, _, query = rest.partition("?")
    ca = _ca(query)
    if ca is not None and not tls:
        raise ValueError("ssl_ca_certs goes with rediss+cluster:// (TLS)")
    netloc, slash, path = rest.partition("/")
    if slash and path:
        raise ValueError("a Redis Cluster has only database 0: no /db")
    userinfo, _, nodes = netloc.rpartition("@")
    username, password = _login(userinfo)
    seeds = tuple(_hostport(node, None) for node in nodes.split(","))
    return ClusterAddress(
        seeds=tuple(dict.fromkeys(seeds)),
        username=username,
        password=password,
        tls=tls,
        ca=ca,
    )
