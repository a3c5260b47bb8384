# -*- test-case-name: tests.test_limits -*-
"""
What ``twistd oxian`` sets for the whole process: the file-descriptor limit
(and the connection cap derived from it), and the garbage collector's
young-generation threshold.

Each client connection holds one descriptor; the process needs more for
its listeners, log files, Redis, sqlite and the files it sends. Past the
soft ``RLIMIT_NOFILE``, ``accept`` fails and Twisted drops connections
with no answer at all; so ``twistd oxian`` raises the soft limit to the
hard one at start, and the sites refuse connections past
``--max-connections`` (default: the soft limit less a reserve) with a 503
while descriptors remain to send it.
"""

from __future__ import annotations

import gc

try:
    import resource
except ImportError:  # not on Windows
    resource = None  # type: ignore[assignment]

__all__ = [
    "FD_RESERVE",
    "GC_THRESHOLD",
    "default_max_connections",
    "fd_limit",
    "raise_fd_limit",
    "set_gc_threshold",
]

#: Descriptors kept back from connections for everything else.
FD_RESERVE = 128
#: The connection cap when the limit is unknown or smaller than the reserve.
_FLOOR = 64
#: Assumed when the platform has no ``RLIMIT_NOFILE``.
_UNKNOWN_LIMIT = 1024


def fd_limit() -> int:
    """The soft file-descriptor limit of this process."""
    if resource is None:
        return _UNKNOWN_LIMIT
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 2**20


def raise_fd_limit() -> int:
    """
    Raise the soft file-descriptor limit to the hard limit (as far as the
    kernel allows); return the soft limit in force afterwards.
    """
    if resource is None:
        return _UNKNOWN_LIMIT
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            # macOS refuses RLIM_INFINITY; some containers any raise.
            pass
    return fd_limit()


def default_max_connections(limit: int) -> int:
    """The default ``--max-connections`` for a soft descriptor limit."""
    return max(limit - FD_RESERVE, _FLOOR)


#: The default ``--gc-threshold``: allocations (less deallocations) of
#: container objects between collections of the youngest generation;
#: Python's own is 700.
GC_THRESHOLD = 5000


def set_gc_threshold(threshold: int) -> tuple[int, int, int]:
    """
    Set the young generation's collection threshold (``0``: leave Python's
    thresholds as they are); return the thresholds in force.

    A server holding thousands of long-lived connections has hundreds of
    thousands of objects that every full collection walks. Python starts a
    full collection after ten collections of the middle generation, each
    after ten of the youngest, each after 700 allocations: at 700, a burst
    of new connections pays for a full walk every ~2,000 connections, a
    pause of tens of milliseconds each time. A larger threshold makes full
    collections that much rarer; the young objects a collection examines
    grow in proportion, so the total work of young collections does not.
    """
    if threshold:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(threshold, middle, old)
    return gc.get_threshold()
