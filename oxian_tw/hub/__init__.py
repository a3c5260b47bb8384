"""
The hub (SPEC §11): named channels that SSE streams subscribe to, with
history, exact resume, epochs, idempotent publish and presence.

Two backends implement `IHub`: `MemoryHub` (``--hub memory``, one process)
and `RedisHub` (``--hub redis://...``, every process sharing one Redis).
`make_hub` picks one from the app's settings.
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
from ._interface import IHub, ISubscriber
from ._memory import MemoryHub
from ._redis import RedisHub

__all__ = (
    "EARLIEST",
    "IDEMPOTENCY_WINDOW",
    "MAX_PRESENCE_INFO",
    "RESET_EVENT",
    "HubStats",
    "IHub",
    "ISubscriber",
    "MemoryHub",
    "RedisHub",
    "make_hub",
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
    """The hub ``--hub`` names: ``"memory"`` or a ``redis://`` URL."""
    limits: dict[str, Any] = {
        "history": history,
        "history_bytes": history_bytes,
        "history_age": history_age,
        "presence_ttl": presence_ttl,
    }
    if where == "memory":
        return MemoryHub(clock, **limits)
    return RedisHub(parse_redis_url(where), clock, **limits)
