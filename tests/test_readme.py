"""
The README's first command as a new user runs it (issue 32): a copy of the
checkout's files (what a fresh clone holds), a fresh venv with nothing in
it, the command exactly as the README writes it — then headless Chromium
finds ``/`` and ``/react`` working over IPv4 and IPv6, and a second server
started the same way in the same directory starts too (no ``twistd.pid``
in the way). Skips (or, under ``.ci/run``, fails) without git, Chromium or
Playwright.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from .helpers import (
    WatchedProcess,
    chromium_and_playwright,
    free_port,
    launch_chromium,
    skip_unless,
)

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: What the example's listener logs for ``any:PORT`` (the default).
LISTENING = r"listening on http://localhost:(\d+)/ \(any:\d+: (.*)\)\s*$"
TIMEOUT_MS = 20_000


def readme_blocks() -> list[str]:
    """The README's ``sh`` blocks, in order."""
    with open(os.path.join(TOP, "README.md"), encoding="utf-8") as f:
        return [b.strip() for b in re.findall(r"```sh\n(.*?)\n```", f.read(), re.S)]


def readme_commands() -> tuple[str, str]:
    """The README's first two ``sh`` blocks: run the example, run the tests."""
    blocks = readme_blocks()
    return blocks[0], blocks[1]


class ReadmeTests(SynchronousTestCase):
    def test_commands_first(self) -> None:
        """
        The README opens with the two commands, each one line, then the one
        that serves the docs through the extra tox builds them with.
        """
        run, test, docs = readme_blocks()[:3]
        self.assertEqual(
            run, "pip install . && twistd -n --pidfile= oxian --routes examples/routes"
        )
        self.assertEqual(test, "pip install tox && tox")
        self.assertEqual(docs, "pip install '.[docs]' && mkdocs serve")
        with open(os.path.join(TOP, "tox.ini"), encoding="utf-8") as f:
            self.assertIn("extras = docs", f.read())


class FirstCommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        git = shutil.which("git")
        skip_unless(
            git is not None and os.path.isdir(os.path.join(TOP, ".git")),
            "not a git checkout (git and .git are needed to copy a clone)",
        )
        self.chromium, self.sync_playwright = chromium_and_playwright()
        work = os.path.abspath(self.mktemp())
        self.clone = os.path.join(work, "clone")
        # The checkout's files as they are (a clone of HEAD in CI's clean
        # clone), without what tests and builds left beside them.
        files = subprocess.run(
            [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=TOP,
            check=True,
            capture_output=True,
        ).stdout.split(b"\0")
        for name in filter(None, (f.decode() for f in files)):
            source = os.path.join(TOP, name)
            if os.path.isfile(source) and not name.startswith("_trial_temp"):
                target = os.path.join(self.clone, name)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copy2(source, target)
        venv = os.path.join(work, "venv")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PORT")
        }
        self.env["PATH"] = os.pathsep.join(
            [os.path.join(venv, "bin"), self.env.get("PATH", "")]
        )
        self.env["VIRTUAL_ENV"] = venv

    def start(self, command: str, port: int) -> tuple[WatchedProcess, str]:
        """``command`` in the clone on ``$PORT``; the server and how it listens."""
        server = WatchedProcess(
            ["bash", "-c", command],
            cwd=self.clone,
            env={**self.env, "PORT": str(port)},
            new_session=True,
        )
        self.addCleanup(self.stop, server)
        # pip installs first: minutes on a cold cache.
        found = server.wait_for(LISTENING, timeout=600)
        self.assertEqual(int(found.group(1)), port)
        return server, found.group(2)

    def stop(self, server: WatchedProcess) -> None:
        if server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGTERM)
        server.process.wait(timeout=30)
        output = server.output(to_the_end=True)
        self.assertNotIn("Traceback", output)

    def working(self, page: Any, base: str) -> None:
        """``/`` streams its chat; ``/react`` counts with React."""
        page.goto(f"{base}/")
        page.wait_for_function(
            "document.getElementById('chat-state').textContent === 'live'"
        )
        page.goto(f"{base}/react")
        page.wait_for_function(
            "document.getElementById('state')?.textContent === 'live'"
        )
        page.wait_for_function(
            "Number(document.getElementById('count')?.textContent) >= 2"
        )

    def test_first_command(self) -> None:
        run, _ = readme_commands()
        port = free_port()
        server, how = self.start(run, port)
        bases = [f"http://127.0.0.1:{port}"]
        if how == "IPv4 and IPv6":
            bases.append(f"http://[::1]:{port}")
        else:
            # A host without IPv6: IPv4 alone, said, never a failure.
            self.assertTrue(how.startswith("IPv4 only"), how)
        with self.sync_playwright() as playwright:
            browser = launch_chromium(playwright, self.chromium)
            try:
                page = browser.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                for base in bases:
                    with self.subTest(base=base):
                        self.working(page, base)
            finally:
                browser.close()
        # The same server again, in the same directory, on another port.
        twistd = run.split("&&", 1)[1].strip()
        second, _ = self.start(twistd, free_port())
        self.assertNotIn("Another twistd server is running", second.output())
        self.assertFalse(os.path.exists(os.path.join(self.clone, "twistd.pid")))
