# -*- test-case-name: tests.test_limits -*-
"""
The process's file-descriptor limit and the connection cap derived from it.

Each client connection holds one descriptor; the process needs more for
its listeners, log files, Redis, sqlite and the files it sends. Past the
soft ``RLIMIT_NOFILE``, ``accept`` fails and Twisted drops connections
with no answer at all; so ``twistd oxian`` raises the soft limit to the
hard one at start, and the sites refuse connections past
``--max-connections`` (default: the soft limit less a reserve) with a 503
while descriptors remain to send it.
"""

from __future__ import annotations

try:
    import resource
except ImportError:  # not on Windows
    resource = None  # type: ignore[assignment]

__all__ = ["FD_RESERVE", "default_max_connections", "fd_limit", "raise_fd_limit"]

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
