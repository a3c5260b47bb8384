# -*- test-case-name: tests.test_dev -*-
"""
``python -m oxian_tw dev --routes DIR [twistd oxian options]``: the server,
restarted when a file of the route tree or the config file changes (extra
the ``dev`` extra: ``watchfiles``).

The server runs as a child ``twistd -n oxian`` with the options given, so
what is served is exactly what ``twistd`` would serve. A child that cannot
start (a syntax error in a route file, say) prints why and the watcher
waits for the next change, instead of dying.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

#: Seconds a server gets to stop (it drains its streams) before it is killed.
STOP_GRACE = 10.0
# Not sources: caches, tools' and editors' files, below a watched root.
_IGNORED_DIRS = frozenset(
    {
        "__pycache__",
        ".git",
        ".hg",
        ".svn",
        ".tox",
        ".venv",
        "node_modules",
        ".mypy_cache",
        ".pytest_cache",
        ".hypothesis",
    }
)
_IGNORED_ENDINGS = (".pyc", ".pyo", ".swp", ".swx", ".tmp", "~")
# Editors' and tools' temporary files, by name: ``sed -i``'s ``sedAb12Cd``,
# vim's write test ``4913``, emacs' ``#file#`` and lock ``.#file``.
_TEMPORARY = re.compile(r"sed[A-Za-z0-9]{6}|\d+|#.*#|\.#.*")
_TWISTD = "import sys; from twisted.scripts.twistd import run; sys.exit(run())"


def say(message: str) -> None:
    """One line of the dev server's own, told apart from the server's log."""
    print(f"oxian_tw dev: {message}", file=sys.stderr, flush=True)


def watched(routes: str, twistd_args: list[str]) -> list[str]:
    """The route tree, and the config file when there is one."""
    paths = [routes]
    config = None
    if "--config" in twistd_args:
        at = twistd_args.index("--config")
        config = twistd_args[at + 1] if at + 1 < len(twistd_args) else None
    elif os.path.exists("oxian.toml"):
        config = "oxian.toml"
    if config is not None and os.path.exists(config):
        paths.append(config)
    return paths


def relevant(roots: list[str]) -> Any:
    """
    A ``watchfiles`` filter: a change counts unless it is in a cache or
    tool directory, or an editor's file, *below* its watched root
    (watchfiles' own filter would also ignore a whole tree that happens
    to sit under, say, ``.tox``).
    """
    absolute = [os.path.abspath(root) for root in roots]

    def accept(change: Any, path: str) -> bool:
        for root in absolute:
            if path == root or path.startswith(root + os.sep):
                parts = os.path.relpath(path, root).split(os.sep)
                break
        else:
            parts = [os.path.basename(path)]
        name = parts[-1]
        if name.endswith(_IGNORED_ENDINGS) or _TEMPORARY.fullmatch(name):
            return False
        return not _IGNORED_DIRS.intersection(parts[:-1])

    return accept


def start(routes: str, twistd_args: list[str]) -> subprocess.Popen[bytes]:
    """A ``twistd -n oxian`` serving ``routes``, its output this process's."""
    command = [
        sys.executable,
        "-c",
        _TWISTD,
        "-n",
        "--pidfile=",
        "oxian",
        "--routes",
        routes,
        *twistd_args,
    ]
    return subprocess.Popen(command)


def stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after `STOP_GRACE` seconds."""
    if server.poll() is not None:
        return
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        say(f"the server did not stop within {STOP_GRACE:g} s; killed")
        server.kill()
        server.wait()


def names(changes: Iterable[tuple[Any, str]], root: str) -> str:
    """The changed files, relative to the working directory."""
    files = sorted({os.path.relpath(path) for _, path in changes})
    shown = ", ".join(files[:3])
    return shown + (f" and {len(files) - 3} more" if len(files) > 3 else "")


def run(
    routes: str, twistd_args: list[str], changes: Iterator[Any] | None = None
) -> int:
    """
    Serve until interrupted, restarting on every change.

    :param changes: batches of ``(change, path)`` (tests pass their own);
        ``watchfiles.watch`` of the route tree and config file by default.
    """
    if changes is None:
        try:
            import watchfiles
        except ImportError:
            say("needs watchfiles: pip install '.[dev]' in a clone (or watchfiles)")
            return 2
        paths = watched(routes, twistd_args)
        changes = watchfiles.watch(*paths, watch_filter=relevant(paths))
    say(f"serving {os.path.abspath(routes)}; restarting on every change")
    server = start(routes, twistd_args)
    stopping = False

    def interrupted(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        for batch in changes:
            status = server.poll()
            if status is not None:
                say(f"the server had exited (status {status})")
            say(f"{names(batch, routes)} changed; restarting")
            stop(server)
            server = start(routes, twistd_args)
            started = time.monotonic()
            # Said at once if the new one dies (a syntax error, say).
            try:
                code = server.wait(2.0)
            except subprocess.TimeoutExpired:
                continue
            say(
                f"the server exited (status {code}) "
                f"{time.monotonic() - started:.1f} s after starting; "
                "waiting for a change"
            )
    except KeyboardInterrupt:
        pass
    finally:
        stop(server)
    say("stopped")
    return 0
