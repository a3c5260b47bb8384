"""
Tests for importing a route tree once per process (SPEC §2).
"""

from __future__ import annotations

import sys

from twisted.trial.unittest import SynchronousTestCase

from oxian_tw._errors import RouteTreeError
from oxian_tw._modules import RouteModules

from .helpers import make_tree


class RouteModulesTests(SynchronousTestCase):
    """Route files load once, under stable names, and share state."""

    def test_sibling_import_shares_module(self) -> None:
        """
        ``from .events import clients`` in a sibling reaches the module the
        router loaded: one set, one module object.
        """
        root = make_tree(
            self.mktemp(),
            {
                "chat/events.py": "clients = set()\n",
                "chat/send.py": "from .events import clients\n",
            },
        )
        modules = RouteModules(root)
        events = modules.load("chat/events.py")
        send = modules.load("chat/send.py")
        self.assertIs(send.clients, events.clients)

    def test_sibling_first_then_router(self) -> None:
        """The order of loading does not matter."""
        root = make_tree(
            self.mktemp(),
            {
                "a/events.py": "clients = set()\n",
                "a/send.py": "from .events import clients\n",
            },
        )
        modules = RouteModules(root)
        send = modules.load("a/send.py")
        self.assertIs(modules.load("a/events.py").clients, send.clients)

    def test_loaded_once(self) -> None:
        """A file's code runs once however often it is loaded."""
        root = make_tree(
            self.mktemp(),
            {
                "[id].py": "import builtins\n"
                "builtins._oxian_loads = getattr(builtins, '_oxian_loads', 0) + 1\n"
            },
        )
        import builtins

        builtins._oxian_loads = 0
        self.addCleanup(delattr, builtins, "_oxian_loads")
        first = RouteModules(root).load("[id].py")
        second = RouteModules(root).load("[id].py")
        self.assertIs(first, second)
        self.assertEqual(builtins._oxian_loads, 1)

    def test_non_identifier_names(self) -> None:
        """``users.csv.py`` and ``[id]`` folders get distinct stable names."""
        root = make_tree(
            self.mktemp(),
            {
                "export/users.csv.py": "X = 1\n",
                "export/users.py": "X = 2\n",
                "[org]/index.py": "from .._lib.util import VALUE\n",
                "_lib/util.py": "VALUE = 3\n",
            },
        )
        modules = RouteModules(root)
        self.assertEqual(modules.load("export/users.csv.py").X, 1)
        self.assertEqual(modules.load("export/users.py").X, 2)
        self.assertEqual(modules.load("[org]/index.py").VALUE, 3)
        self.assertIn(modules.module_name("export/users.csv.py"), sys.modules)

    def test_relative_import_private_folder(self) -> None:
        """Relative imports reach private helper folders at any depth."""
        root = make_tree(
            self.mktemp(),
            {
                "_lib/db.py": "NAME = 'db'\n",
                "a/b/c.py": "from ..._lib import db\n",
            },
        )
        self.assertEqual(RouteModules(root).load("a/b/c.py").db.NAME, "db")

    def test_syntax_error_names_file_and_line(self) -> None:
        """A syntax error is a RouteTreeError with the file and line."""
        root = make_tree(self.mktemp(), {"bad.py": "x = 1\ndef GET(:\n"})
        error = self.assertRaises(RouteTreeError, RouteModules(root).load, "bad.py")
        self.assertIn("bad.py:2", str(error))

    def test_import_error_names_file_and_line(self) -> None:
        """An exception at import names the file and line, and is retried later."""
        root = make_tree(self.mktemp(), {"boom.py": "\n\nraise KeyError('x')\n"})
        modules = RouteModules(root)
        error = self.assertRaises(RouteTreeError, modules.load, "boom.py")
        self.assertIn("boom.py:3", str(error))
        self.assertNotIn(modules.module_name("boom.py"), sys.modules)
