# -*- test-case-name: tests.test_hub_ids -*-
"""
Event ids of the hub (SPEC §11.1), sans-I/O.

Order is per channel: each channel has its own epoch (a random name for
one unbroken history: a channel whose history was lost gets a new one) and
its own sequence ``n`` (1, 2, 3... within the epoch). A position in a
channel is ``<epoch>-<n>``, and that is the id `IHub.publish` returns.

A stream may follow several channels and has one ``Last-Event-ID``: the id
of each event it receives lists its position in every one of its channels,
``<epoch>-<n>`` parts joined by ``.`` in the order of the channels' names.
A stream on one channel therefore gets exactly the id ``publish`` returned.
The channel of a part is the one whose current epoch it names: epochs are
random (40 bits), so the channels of one stream never share one, and a part
whose epoch no channel has any more (its history was lost) resumes nothing:
that channel gets ``reset``.

A stream follows at most `MAX_STREAM_CHANNELS` channels (an id of that many
parts is about a kilobyte, well inside a request header).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

import attrs

__all__ = (
    "MAX_STREAM_CHANNELS",
    "Position",
    "compose",
    "new_epoch",
    "parse",
)

#: The most channels one stream may follow (its id names each).
MAX_STREAM_CHANNELS = 64

#: An epoch: 10 hexadecimal digits (40 random bits).
_EPOCH = r"[0-9a-f]{10}"
_PART = re.compile(rf"({_EPOCH})-(0|[1-9][0-9]{{0,15}})")


@attrs.frozen
class Position:
    """
    Where a channel is: its ``epoch`` and the ``n`` of its last event (0:
    none yet in this epoch).
    """

    epoch: str
    n: int

    def __str__(self) -> str:
        return f"{self.epoch}-{self.n}"

    def next(self) -> Position:
        """The position of the channel's next event."""
        return Position(self.epoch, self.n + 1)


def new_epoch() -> str:
    """A fresh epoch: 40 random bits."""
    return os.urandom(5).hex()


def compose(positions: Iterable[Position]) -> str:
    """
    The id of an event for a stream at ``positions`` (one per channel, in
    the order of the channels' names).
    """
    return ".".join(f"{p.epoch}-{p.n}" for p in positions)


def parse(text: str) -> dict[str, int] | None:
    """
    The positions an id names, as ``{epoch: n}``; ``None`` when it is not
    an id of the hub (an id set by the app, a damaged one, one naming an
    epoch twice).
    """
    parts = text.split(".")
    if not 0 < len(parts) <= MAX_STREAM_CHANNELS:
        return None
    positions: dict[str, int] = {}
    for part in parts:
        match = _PART.fullmatch(part)
        if match is None or match[1] in positions:
            return None
        positions[match[1]] = int(match[2])
    return positions


def resume_point(positions: Mapping[str, int] | None, epoch: str) -> Position | None:
    """
    Where a stream presenting ``positions`` (`parse`'s) stopped in a
    channel whose current epoch is ``epoch``; ``None`` when the id does not
    name it (that channel is reset).
    """
    if positions is None:
        return None
    n = positions.get(epoch)
    return None if n is None else Position(epoch, n)
