"""
The hub (SPEC §11): named channels that SSE streams subscribe to, with
history, exact resume, epochs, idempotent publish and presence.

One core (`Hub`, written once) over a backend (`IBackend`): memory
(``--hub memory``, one process) or Redis (``--hub redis://...``, every
process sharing it). `make_hub` picks one from the ``--hub`` URL's scheme;
nothing outside this package knows what Redis is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._channels import (
    EARLIEST,
    IDEMPOTENCY_WINDOW,
    MAX_PRESENCE_INFO,
    RESET_EVENT,
    HubStats,
)
from ._client import parse_redis_url
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
SCHEMES = ("memory", "redis://")


def check_hub(where: str) -> None:
    """:raises ValueError: for a ``--hub`` no backend serves."""
    if where == "memory":
        return
    if where.startswith("redis://"):
        parse_redis_url(where)
        return
    raise ValueError("expected 'memory' or redis://host[:port][/db]")


def describe_hub(where: str) -> str:
    """``--hub`` for a log line: a URL without its credentials."""
    if where == "memory":
        return where
    return str(parse_redis_url(where))


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
    return RedisHub(parse_redis_url(where), clock, **limits)
