"""
``python -m oxian_tw dev`` end to end (issue 18): a real dev server over a
temporary route tree restarts the server when a route file changes, shows a
syntax error without dying and serves again once it is fixed, and stops
its server when stopped itself.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import urllib.request

from twisted.trial.unittest import SynchronousTestCase

from .helpers import LISTENING, WatchedProcess, make_tree, skip_unless

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        return str(response.read().decode())


def write(path: str, text: str) -> None:
    # A new mtime even within the same second.
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    now = time.time()
    os.utime(path, (now + 1, now + 1))


class DevServerTests(SynchronousTestCase):
    def setUp(self) -> None:
        try:
            import watchfiles  # noqa: F401
        except ImportError:
            skip_unless(False, "watchfiles is not installed (pip install '.[dev]')")
        self.root = make_tree(
            self.mktemp(), {"index.py": 'def GET(data, ctx):\n    return "one"\n'}
        )
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (TOP, env.get("PYTHONPATH")) if p
        )
        self.dev = WatchedProcess(
            [
                sys.executable,
                "-m",
                "oxian_tw",
                "dev",
                "--routes",
                self.root,
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--access-log",
                "off",
            ],
            env=env,
        )
        self.addCleanup(self.stop)

    def stop(self) -> None:
        if self.dev.process.poll() is None:
            self.dev.process.kill()
            self.dev.process.wait(10)

    def port(self) -> int:
        return int(self.dev.wait_for(LISTENING, 30).group(1))

    def test_restart_on_change_and_survive_a_syntax_error(self) -> None:
        index = os.path.join(self.root, "index.py")
        self.assertEqual(get(self.port()), "one")

        write(index, 'def GET(data, ctx):\n    return "two"\n')
        self.dev.wait_for(r"oxian_tw dev: .*index\.py changed; restarting", 30)
        self.assertEqual(get(self.port()), "two")

        write(index, "def GET(data, ctx)\n    return 'broken'\n")
        self.dev.wait_for(r"index\.py:1: syntax error", 30)
        self.dev.wait_for(r"oxian_tw dev: the server exited .*waiting for a change", 30)
        self.assertIsNone(self.dev.process.poll())

        write(index, 'def GET(data, ctx):\n    return "three"\n')
        self.assertEqual(get(self.port()), "three")

        self.dev.process.send_signal(signal.SIGTERM)
        self.assertEqual(self.dev.process.wait(30), 0)
        self.assertIn("oxian_tw dev: stopped", self.dev.output(to_the_end=True))


class FilterTests(SynchronousTestCase):
    """What counts as a change: relative to the watched root."""

    def test_relevant(self) -> None:
        from oxian_tw._dev import relevant

        root = "/srv/.tox/py/tmp/routes"
        accept = relevant([root, "/srv/oxian.toml"])
        self.assertTrue(accept(None, f"{root}/index.py"))
        self.assertTrue(accept(None, f"{root}/users/[id].py"))
        self.assertTrue(accept(None, "/srv/oxian.toml"))
        self.assertFalse(accept(None, f"{root}/__pycache__/index.cpython-311.pyc"))
        self.assertFalse(accept(None, f"{root}/.git/index"))
        self.assertFalse(accept(None, f"{root}/index.py~"))
        self.assertFalse(accept(None, f"{root}/.#index.py"))
        # Editors' temporary files: sed -i, vim, emacs.
        for name in ("sedDYOMDB", "4913", "#index.py#", "index.py.tmp"):
            self.assertFalse(accept(None, f"{root}/{name}"), name)
        self.assertTrue(accept(None, f"{root}/sed.py"))
