"""Shared by the benchmark scripts: pinning, starting servers, reading RSS."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOP)

from tests.helpers import (  # noqa: E402 - needs TOP on the path
    LISTENING,
    RedisServer,
    rss_bytes,
    twistd_command,
)

__all__ = (
    "RedisServer",
    "against",
    "checkout",
    "oxian_command",
    "pinned",
    "remove_checkout",
    "rss_bytes",
    "start",
)


def pinned(cpu: int, command: list[str]) -> list[str]:
    """``command`` run on CPU ``cpu`` when ``taskset`` exists."""
    if shutil.which("taskset"):
        return ["taskset", "-c", str(cpu), *command]
    return command


def checkout(rev: str) -> str:
    """
    A detached checkout of ``rev`` in a temporary directory (a git
    worktree of this one), to serve as `start`'s ``top``; `remove_checkout`
    when done.
    """
    path = tempfile.mkdtemp(prefix="oxian-bench-rev-")
    os.rmdir(path)
    subprocess.run(
        ["git", "-C", TOP, "worktree", "add", "--detach", path, rev],
        check=True,
        capture_output=True,
    )
    return path


def remove_checkout(path: str) -> None:
    """Remove a `checkout`."""
    subprocess.run(
        ["git", "-C", TOP, "worktree", "remove", "--force", path],
        capture_output=True,
    )


def against(
    chosen: dict[str, tuple[list[str], str, str]], rev: str | None
) -> str | None:
    """
    With ``rev``, add to ``chosen`` (name -> command, port pattern, checkout)
    each oxian_tw server again as "NAME @ REV", served from a `checkout` of
    ``rev``; returns that checkout (to `remove_checkout`), else ``None``.
    """
    if not rev:
        return None
    older = checkout(rev)
    for name, (command, pattern, _) in list(chosen.items()):
        if name.startswith("oxian_tw"):
            chosen[f"{name} @ {rev}"] = (command, pattern, older)
    return older


#: The port of a starting ``twistd -n oxian`` of this or an older revision
#: (before the listener's URL lines, only Twisted's port line names it).
ANY_REVISION = rf"(?:{LISTENING}|OxianSite starting on (\d+))"


def oxian_command(routes: str, *args: str, **kwargs: str) -> tuple[list[str], str]:
    """
    ``twistd -n oxian`` on an ephemeral port with more ``args`` (keywords
    as for ``twistd_command``), and its port's log pattern.
    """
    return twistd_command("--routes", routes, *args, **kwargs), ANY_REVISION


def start(
    command: list[str], pattern: str, top: str = TOP, output: str | None = None
) -> tuple[subprocess.Popen[str], int]:
    """
    Start a server on CPU 0; return it and the port its output names.

    :param top: the checkout whose oxian_tw (and twistd plugin) it runs:
        this one, installed or not, unless another is named.
    :param output: a file its output (an access log on stdout) is written
        to, as a deployment writes it; else a pipe this process drains.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (top, env.get("PYTHONPATH")) if p)
    sink = None if output is None else open(output, "w")  # noqa: SIM115
    try:
        process = subprocess.Popen(
            pinned(0, command),
            stdout=subprocess.PIPE if sink is None else sink,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            # ``python -c`` puts its working directory first on the path,
            # before PYTHONPATH: run in ``top``, or another checkout's
            # oxian_tw (the caller's directory's) would be the one measured.
            cwd=top,
        )
    finally:
        if sink is not None:
            sink.close()  # (the server has its own copy)
    if output is not None:
        return process, _port_in_file(process, output, pattern)
    assert process.stdout is not None
    for line in process.stdout:
        found = re.search(pattern, line)
        if found:
            # Keep draining so the server never blocks on its log pipe.
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process, int(next(g for g in found.groups() if g))
    raise SystemExit(f"server did not start: {command}")


def _port_in_file(process: subprocess.Popen[str], path: str, pattern: str) -> int:
    """The port ``process``'s output in ``path`` names, once it does."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        with open(path) as f:
            found = re.search(pattern, f.read())
        if found:
            return int(next(g for g in found.groups() if g))
        time.sleep(0.05)
    raise SystemExit(f"server did not start: {process.args}")
