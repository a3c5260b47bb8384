"""
Tests for file discovery and the route table (SPEC §2).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from oxian_tw._errors import RouteTreeError
from oxian_tw._routing import RouteTable, discover, route_for_file

from .helpers import make_tree

# (file, URL pattern) rows of the SPEC §2 table, and a few more.
FILE_PATTERNS = [
    ("index.py", "/"),
    ("stream.py", "/stream"),
    ("users/index.py", "/users"),
    ("users/[id].py", "/users/:id"),
    ("download/[filename].py", "/download/:filename"),
    ("stocks/[symbol]/stream.py", "/stocks/:symbol/stream"),
    ("export/users.csv.py", "/export/users.csv"),
    ("docs/[...path].py", "/docs/*path"),
    ("users/[user-id]/posts.py", "/users/:user-id/posts"),
    ("[org]/index.py", "/:org"),
]


class RouteForFileTests(SynchronousTestCase):
    """File names become URL patterns."""

    def test_table(self) -> None:
        """Each file of the table maps to its pattern."""
        for file, pattern in FILE_PATTERNS:
            with self.subTest(file=file):
                self.assertEqual(route_for_file(file).pattern, pattern)

    def test_malformed_parameter(self) -> None:
        """A bracketed name that is not [name] or [...name] is an error."""
        for file in ("[id.py", "a/[a b].py", "[].py", "x]/index.py"):
            with self.subTest(file=file):
                self.assertRaises(RouteTreeError, route_for_file, file)

    def test_catch_all_must_be_last(self) -> None:
        """A catch-all folder with routes below it is refused."""
        error = self.assertRaises(RouteTreeError, route_for_file, "[...p]/x.py")
        self.assertIn("last segment", str(error))

    def test_repeated_param(self) -> None:
        """One parameter name twice in a pattern is refused."""
        self.assertRaises(RouteTreeError, route_for_file, "[id]/[id].py")


class DiscoverTests(SynchronousTestCase):
    """Walking a directory."""

    def tree(self, *files: str) -> str:
        return make_tree(self.mktemp(), {f: "" for f in files})

    def test_public_routes_only(self) -> None:
        """
        Private names (``_`` or ``.``), pipeline files, ``__pycache__`` and
        non-Python files are never routes.
        """
        root = self.tree(
            "index.py",
            "_lib/db.py",
            "_helper.py",
            ".hidden.py",
            ".secret/x.py",
            "__pycache__/index.cpython-311.py",
            "dependencies.py",
            "middleware.py",
            "users/interceptors.py",
            "users/README.md",
            "users/[id].py",
        )
        self.assertEqual(sorted(r.pattern for r in discover(root)), ["/", "/users/:id"])

    def test_conflict_names_both_files(self) -> None:
        """Two files mapping to one pattern is a startup error naming both."""
        root = self.tree("users.py", "users/index.py")
        error = self.assertRaises(RouteTreeError, discover, root)
        self.assertIn("users.py", str(error))
        self.assertIn("users/index.py", str(error))

    def test_conflict_param_names_differ(self) -> None:
        """``[id].py`` and ``[uid]/index.py`` serve the same URLs: a conflict."""
        root = self.tree("u/[id].py", "u/[uid]/index.py")
        self.assertRaises(RouteTreeError, discover, root)

    def test_missing_directory(self) -> None:
        """A missing route directory is a clear error."""
        error = self.assertRaises(RouteTreeError, discover, self.mktemp())
        self.assertIn("does not exist", str(error))


def table(*files: str) -> RouteTable:
    return RouteTable(route_for_file(f) for f in files)


# (files, path, expected file or None, expected params)
MATCHES = [
    (
        ("users/me.py", "users/[id].py", "users/[...rest].py"),
        "users/me",
        "users/me.py",
        {},
    ),
    (
        ("users/me.py", "users/[id].py", "users/[...rest].py"),
        "users/42",
        "users/[id].py",
        {"id": "42"},
    ),
    (
        ("users/me.py", "users/[id].py", "users/[...rest].py"),
        "users/a/b",
        "users/[...rest].py",
        {"rest": ["a", "b"]},
    ),
    # Positional, not a score sum: param beats catch-all at the first difference.
    (
        ("[g]/[h]/[i].py", "docs/[...path].py"),
        "docs/a/b",
        "docs/[...path].py",
        {"path": ["a", "b"]},
    ),
    (
        ("[g]/[h]/[i].py", "docs/[...path].py"),
        "x/a/b",
        "[g]/[h]/[i].py",
        {"g": "x", "h": "a", "i": "b"},
    ),
    (
        ("docs/[a]/[b].py", "docs/[...path].py"),
        "docs/x/y",
        "docs/[a]/[b].py",
        {"a": "x", "b": "y"},
    ),
    (("[a]/b.py", "x/[b].py"), "x/b", "x/[b].py", {"b": "b"}),
    # A catch-all needs one segment or more.
    (("docs/[...path].py",), "docs", None, {}),
    (("index.py",), "", "index.py", {}),
    (("export/users.csv.py",), "export/users.csv", "export/users.csv.py", {}),
    (("export/users.csv.py",), "export/usersXcsv", None, {}),
    (("users/[id].py",), "users", None, {}),
    (("users/[id].py",), "users/1/2", None, {}),
]


class MatchTests(SynchronousTestCase):
    """Matching decoded segments, in positional precedence."""

    def test_matches(self) -> None:
        """Each row picks the expected file with the expected params."""
        for files, path, expected, params in MATCHES:
            segments = [s for s in path.split("/") if s]
            for order in (files, tuple(reversed(files))):
                with self.subTest(files=order, path=path):
                    match = table(*order).match(segments)
                    if expected is None:
                        self.assertIsNone(match)
                    else:
                        assert match is not None
                        self.assertEqual(match.route.file, expected)
                        self.assertEqual(match.params, params)

    def test_unsafe_params(self) -> None:
        """A decoded segment with ``/``, ``\\``, NUL, or ``..`` matches nothing."""
        routes = table("users/[id].py", "docs/[...p].py")
        for bad in ("a/b", "a\\b", "a\x00", ".."):
            with self.subTest(segment=bad):
                self.assertIsNone(routes.match(["users", bad]))
                self.assertIsNone(routes.match(["docs", "x", bad]))

    def test_precedence_order(self) -> None:
        """``routes`` lists static before param before catch-all, left to right."""
        routes = table("[...all].py", "[a]/x.py", "b/[c].py", "b/d.py", "index.py")
        self.assertEqual(
            [r.pattern for r in routes.routes],
            ["/", "/b/d", "/b/:c", "/:a/x", "/*all"],
        )
