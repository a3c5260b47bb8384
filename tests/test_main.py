"""
Tests for ``python -m oxian_tw routes``.
"""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout

from twisted.trial.unittest import SynchronousTestCase

from oxian_tw.__main__ import main

from .helpers import make_tree


class RoutesCommandTests(SynchronousTestCase):
    """Listing a tree."""

    def run_main(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(argv))
        return code, out.getvalue(), err.getvalue()

    def test_lists_in_precedence_order(self) -> None:
        """One line per route: methods, pattern, file, most specific first."""
        root = make_tree(
            self.mktemp(),
            {
                "users/[id].py": "def GET(d, c): pass\ndef DELETE(d, c): pass\n",
                "users/me.py": "def GET(d, c): pass\n",
                "[...all].py": "def default(d, c): pass\n",
            },
        )
        code, out, _ = self.run_main("routes", root)
        self.assertEqual(code, 0)
        rows = [line.split() for line in out.splitlines()]
        self.assertEqual(
            rows,
            [
                ["GET,HEAD,OPTIONS", "/users/me", "users/me.py"],
                ["GET,HEAD,DELETE,OPTIONS", "/users/:id", "users/[id].py"],
                ["GET,HEAD,POST,PUT,PATCH,DELETE,OPTIONS", "/*all", "[...all].py"],
            ],
        )

    def test_error(self) -> None:
        """A broken tree exits 2 with the reason."""
        root = make_tree(self.mktemp(), {"a.py": "", "a/index.py": ""})
        code, _, err = self.run_main("routes", root)
        self.assertEqual(code, 2)
        self.assertIn("both map to /a", err)

    def test_undeclarable_data(self) -> None:
        """A declared ``data`` type no rule converts: exit 2, the file named."""
        root = make_tree(
            self.mktemp(),
            {
                "bad.py": (
                    "import dataclasses\n"
                    "class Opaque: pass\n"
                    "@dataclasses.dataclass\n"
                    "class Params:\n"
                    "    thing: Opaque\n"
                    "def GET(data: Params, ctx): pass\n"
                )
            },
        )
        code, _, err = self.run_main("routes", root)
        self.assertEqual(code, 2)
        self.assertIn("bad.py", err)
        self.assertIn("Opaque", err)
