# -*- test-case-name: tests.test_exchange -*-
"""
The phases of a request's response, and every move between them, in one
place (`oxian_tw._exchange.Exchange.move` enforces them).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class Phase(enum.Enum):
    """Where a request's response is (`TRANSITIONS` says where it may go)."""

    #: Nothing sent yet.
    PENDING = "pending"
    #: A streamed body (or an event stream) is being sent.
    OPEN = "open"
    #: The response is complete, or its stream ended.
    DONE = "done"
    #: The client left before the response was complete.
    GONE = "gone"

    # Members are singletons: identity hashing (C) instead of Enum's
    # hash of the name (Python), paid on every move of every request.
    __hash__ = object.__hash__


#: Every move a request's phase may make; any other is a bug.
TRANSITIONS: Mapping[Phase, frozenset[Phase]] = {
    Phase.PENDING: frozenset({Phase.OPEN, Phase.DONE, Phase.GONE}),
    Phase.OPEN: frozenset({Phase.DONE, Phase.GONE}),
    Phase.DONE: frozenset(),
    Phase.GONE: frozenset(),
}
