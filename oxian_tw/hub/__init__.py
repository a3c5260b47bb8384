"""
The hub (SPEC §11): named channels that SSE streams subscribe to, with
history, exact resume, epochs, idempotent publish and presence.

One core (`Hub`, written once) over a backend (`IBackend`): memory
(``--hub memory``, one process) or Redis (``--hub redis://...`` or a
Cluster, ``--hub redis+cluster://...``, every process sharing it).
`make_hub` picks one from the ``--hub`` URL's scheme; nothing outside this
package knows what Redis is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._address import parse_cluster_url, parse_redis_url
from ._channels import (
    EARLIEST,
    IDEMPOTENCY_WINDOW,
    MAX_PRESENCE_INFO,
    RESET_EVENT,
    HubStats,
)
from ._cluster import ClusterHub
from ._core import Hub
from ._ids import MAX_STREAM_CHANNELS
from ._interface import IBackend, IHub, ISubscriber
from ._memory import MemoryBackend, MemoryHub
from ._redis import RedisBackend, RedisHub

__all__ = (
    "EARLIEST",
    "IDEMPOTENCY_WINDOW",
    "MAX_PRESENCE_INFO",
    "MAX_STREAM_CHANNELS",
    "RESET_EVENT",
    "SCHEMES",
    "ClusterHub",
    "Hub",
    "HubStats",
    "IBackend",
    "IHub",
    "ISubscriber",
    "MemoryBackend",
    "MemoryHub",
    "RedisBackend",
    "RedisHub",
    "check_hub",
    "describe_hub",
    "make_hub",
)

#: ``--hub`` values: ``memory``, or a URL whose scheme names the backend.
SCHEMES = ("memory", "redis://", "rediss://", "redis+cluster://", "rediss+cluster://")

_CLUSTER = ("redis+cluster://", "rediss+cluster://")


def check_hub(where: str) -> None:
    """:raises ValueError: for a ``--hub`` no backend serves."""
    describe_hub(where)


def describe_hub(where: str) -> str:
    """
    ``--hub`` for a log line: a URL without its credentials.

    :raises ValueError: for a ``--hub`` no backend serves.
    """
    if where == "memory":
        return where
    if where.startswith(_CLUSTER):
        return str(parse_cluster_url(where))
    if where.startswith(("redis://", "rediss://")):
        return str(parse_redis_url(where))
    raise ValueError(
        "expected 'memory', redis[s]://host[:port][/db] or "
        "redis[s]+cluster://host:port[,host:port...]"
    )


def make_hub(
    where: str,
    clock: Callable[[], Any],
    *,
    history: int,
    history_bytes: int,
    history_age: float,
    presence_ttl: float,
) -> IHub:
    """The hub ``--hub`` names (`SCHEMES`)."""
    check_hub(where)
    limits: dict[str, Any] = {
        "history": history,
        "history_bytes": history_bytes,
        "history_age": history_age,
        "presence_ttl": presence_ttl,
    }
    if where == "memory":
        return MemoryHub(clock, **limits)
    if where.startswith(_CLUSTER):
        return ClusterHub(parse_cluster_url(where), clock, **limits)
    return RedisHub(parse_redis_url(where), clock, **limits)
