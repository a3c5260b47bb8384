# -*- test-case-name: tests.test_exchange -*-
"""
Async iterators as response bodies (SPEC §14): each item written only once
the previous one was accepted (the write's Deferred fired ``True``), so the
transport's backpressure reaches the iterator; the iterator closed
(``aclose()``, its ``finally`` runs) however the pump ends: exhausted, the
client gone, or cancelled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .sse import Event

if TYPE_CHECKING:
    from ._eventstream import EventStream
    from ._producer import Stream

# Handler results that are surely not async iterators.
_PLAIN = frozenset({str, bytes, dict, list, tuple, int, float, bool, type(None)})


def is_async_iterable(value: Any) -> bool:
    """Whether ``value`` is an async iterable (has ``__aiter__``)."""
    return type(value) not in _PLAIN and hasattr(value, "__aiter__")


async def pump_events(sse: EventStream, source: Any) -> None:
    """
    Send each item of ``source`` as an event: an `oxian_tw.sse.Event` as
    it is, anything else as its data (a ``str`` as is, other values as
    JSON).
    """
    iterator = source.__aiter__()
    try:
        async for item in iterator:
            if isinstance(item, Event):
                sent = sse.send(
                    item.data, event=item.event, id=item.id, retry=item.retry
                )
            else:
                sent = sse.send(item)
            if not await sent:
                return
    finally:
        await _close(iterator)


async def pump_chunks(stream: Stream, source: Any) -> None:
    """Write each item of ``source`` (``str`` or bytes-like) to ``stream``."""
    iterator = source.__aiter__()
    try:
        async for chunk in iterator:
            if not await stream.write(chunk):
                return
    finally:
        await _close(iterator)


async def _close(iterator: Any) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
