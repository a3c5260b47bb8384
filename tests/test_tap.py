"""
Tests for the ``twistd oxian`` plugin and its options (SPEC §8).
"""

from __future__ import annotations

import os

from twisted.application.service import IService, IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw.tap import Options, makeService

from .helpers import make_tree


class PluginTests(SynchronousTestCase):
    """The plugin is discoverable."""

    def test_found(self) -> None:
        """``getPlugins(IServiceMaker)`` yields a plugin named ``oxian``."""
        plugins = {p.tapname: p for p in getPlugins(IServiceMaker)}
        self.assertIn("oxian", plugins)
        self.assertIs(plugins["oxian"].options, Options)


class OptionsTests(SynchronousTestCase):
    """Parsing ``twistd oxian`` options."""

    def setUp(self) -> None:
        self.routes = make_tree(
            self.mktemp(), {"index.py": "def GET(d, c):\n    return 1\n"}
        )
        self.patch(os, "environ", {k: v for k, v in os.environ.items() if k != "PORT"})

    def parse(self, *args: str) -> Options:
        options = Options()
        options.parseOptions(["--routes", self.routes, *args])
        return options

    def test_defaults(self) -> None:
        """The defaults of SPEC §8."""
        settings = self.parse().settings()
        self.assertEqual(settings["listen"], ("tcp:8080",))
        self.assertEqual(settings["base-path"], "/")
        self.assertEqual(settings["body-limit"], 1024 * 1024)
        self.assertEqual(settings["buffer-limit"], 4 * 1024 * 1024)
        self.assertEqual(settings["sse-budget"], 1024 * 1024)
        self.assertEqual(settings["ping"], 15.0)
        self.assertEqual(settings["write-timeout"], 60.0)
        self.assertIsNone(settings["max-streams"])
        self.assertEqual(settings["shutdown-grace"], 5.0)
        self.assertFalse(settings["debug"])

    def test_port_env(self) -> None:
        """With ``$PORT`` set, the default is ``tcp:$PORT``."""
        os.environ["PORT"] = "9999"
        self.assertEqual(self.parse().settings()["listen"], ("tcp:9999",))

    def test_repeatable_listen(self) -> None:
        """``--listen`` repeats."""
        settings = self.parse("--listen", "tcp:1", "--listen", "unix:/tmp/s").settings()
        self.assertEqual(settings["listen"], ("tcp:1", "unix:/tmp/s"))

    def test_values(self) -> None:
        """Every option with a value, and ``--debug``."""
        settings = self.parse(
            "--base-path",
            "/api/",
            "--body-limit",
            "10",
            "--buffer-limit",
            "20",
            "--sse-budget",
            "30",
            "--ping",
            "2.5",
            "--write-timeout",
            "7",
            "--max-streams",
            "100",
            "--shutdown-grace",
            "0",
            "--debug",
        ).settings()
        self.assertEqual(settings["sse-budget"], 30)
        self.assertEqual(settings["ping"], 2.5)
        self.assertEqual(settings["write-timeout"], 7.0)
        self.assertEqual(settings["max-streams"], 100)
        self.assertEqual(settings["shutdown-grace"], 0.0)
        self.assertEqual(settings["base-path"], "/api")
        self.assertEqual(settings["body-limit"], 10)
        self.assertEqual(settings["buffer-limit"], 20)
        self.assertTrue(settings["debug"])

    def test_bad_values(self) -> None:
        """Bad values are usage errors naming the option."""
        for args in (
            ["--body-limit", "ten"],
            ["--body-limit", "0"],
            ["--buffer-limit", "-1"],
            ["--base-path", "api"],
            ["--ping", "-1"],
            ["--ping", "nan"],
            ["--write-timeout", "0"],
            ["--max-streams", "0"],
            ["--shutdown-grace", "soon"],
        ):
            with self.subTest(args=args):
                error = self.assertRaises(usage.UsageError, self.parse, *args)
                self.assertIn(args[0], str(error))

    def test_missing_routes(self) -> None:
        """A missing route directory is a usage error, not a traceback."""
        options = Options()
        error = self.assertRaises(
            usage.UsageError, options.parseOptions, ["--routes", self.mktemp()]
        )
        self.assertIn("not a directory", str(error))


class MakeServiceTests(SynchronousTestCase):
    """``makeService``."""

    def test_service_per_listen(self) -> None:
        """One listening service per ``--listen``."""
        routes = make_tree(self.mktemp(), {"index.py": ""})
        options = Options()
        options.parseOptions(
            ["--routes", routes, "--listen", "tcp:0", "--listen", "tcp:0"]
        )
        service = makeService(options)
        self.assertTrue(IService.providedBy(service))
        self.assertEqual(len(list(service)), 2)

    def test_route_error_exits_cleanly(self) -> None:
        """A broken tree stops startup with a message naming the file."""
        routes = make_tree(self.mktemp(), {"a.py": "", "a/index.py": ""})
        options = Options()
        options.parseOptions(["--routes", routes])
        error = self.assertRaises(SystemExit, makeService, options)
        self.assertIn("a/index.py", str(error.code))
