"""
Tests for the ``twistd oxian`` plugin and its options (SPEC §8).
"""

from __future__ import annotations

import gc
import os
from typing import Any

from twisted.application.service import IService, IServiceMaker
from twisted.internet.task import Clock
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw import OxianApp
from oxian_tw._config import OPTIONS_BY_NAME, ConfigError, Settings
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
        settings = self.parse().settings
        # Every IPv4 and IPv6 interface (test_listen: IPv4 alone without IPv6).
        self.assertEqual(settings.listen, ("any:8080",))
        self.assertEqual(settings.base_path, "/")
        self.assertEqual(settings.body_limit, 1024 * 1024)
        self.assertEqual(settings.buffer_limit, 4 * 1024 * 1024)
        self.assertEqual(settings.sse_budget, 1024 * 1024)
        self.assertEqual(settings.ping, 15.0)
        self.assertEqual(settings.write_timeout, 60.0)
        self.assertIsNone(settings.max_streams)
        self.assertEqual(settings.shutdown_grace, 5.0)
        self.assertFalse(settings.debug)

    def test_port_env(self) -> None:
        """With ``$PORT`` set, the default is ``any:$PORT``."""
        os.environ["PORT"] = "9999"
        self.assertEqual(self.parse().settings.listen, ("any:9999",))

    def test_repeatable_listen(self) -> None:
        """``--listen`` repeats."""
        settings = self.parse("--listen", "tcp:1", "--listen", "unix:/tmp/s").settings
        self.assertEqual(settings.listen, ("tcp:1", "unix:/tmp/s"))

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
        ).settings
        self.assertEqual(settings.sse_budget, 30)
        self.assertEqual(settings.ping, 2.5)
        self.assertEqual(settings.write_timeout, 7.0)
        self.assertEqual(settings.max_streams, 100)
        self.assertEqual(settings.shutdown_grace, 0.0)
        self.assertEqual(settings.base_path, "/api")
        self.assertEqual(settings.body_limit, 10)
        self.assertEqual(settings.buffer_limit, 20)
        self.assertTrue(settings.debug)

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
            ["--hub", "redis.example:6379"],
            ["--hub", "redis://h/zero"],
            ["--hub", "redis://h:0"],
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

    def setUp(self) -> None:
        self.addCleanup(gc.set_threshold, *gc.get_threshold())

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


def every_option(routes: str) -> dict[str, tuple[list[str], str, Any]]:
    """
    For each option: command-line arguments, the same setting in TOML, and
    the value both give (never the default).
    """
    return {
        "routes": (["--routes", routes], f"routes = {routes!r}", routes),
        "listen": (
            ["--listen", "tcp:1", "--listen", "unix:/tmp/x.sock"],
            'listen = ["tcp:1", "unix:/tmp/x.sock"]',
            ("tcp:1", "unix:/tmp/x.sock"),
        ),
        "base-path": (["--base-path", "/api/"], 'base-path = "/api/"', "/api"),
        "cors-origin": (
            ["--cors-origin", "https://a.example", "--cors-origin", "*"],
            'cors-origin = ["https://a.example", "*"]',
            ("https://a.example", "*"),
        ),
        "cors-credentials": (["--cors-credentials"], "cors-credentials = true", True),
        "cors-methods": (
            ["--cors-methods", "GET,POST"],
            'cors-methods = ["GET", "POST"]',
            ("GET", "POST"),
        ),
        "cors-headers": (
            ["--cors-headers", "Authorization", "--cors-headers", "X-Trace"],
            'cors-headers = ["Authorization", "X-Trace"]',
            ("Authorization", "X-Trace"),
        ),
        "cors-expose-headers": (
            ["--cors-expose-headers", "X-Request-Id"],
            'cors-expose-headers = ["X-Request-Id"]',
            ("X-Request-Id",),
        ),
        "cors-max-age": (["--cors-max-age", "600"], "cors-max-age = 600", 600),
        "body-limit": (["--body-limit", "10"], "body-limit = 10", 10),
        "form-fields": (["--form-fields", "7"], "form-fields = 7", 7),
        "header-timeout": (["--header-timeout", "3"], "header-timeout = 3", 3.0),
        "body-timeout": (["--body-timeout", "4"], "body-timeout = 4", 4.0),
        "tls-handshake-timeout": (
            ["--tls-handshake-timeout", "5"],
            "tls-handshake-timeout = 5",
            5.0,
        ),
        "first-byte-timeout": (
            ["--first-byte-timeout", "6"],
            "first-byte-timeout = 6",
            6.0,
        ),
        "keep-alive-timeout": (
            ["--keep-alive-timeout", "8"],
            "keep-alive-timeout = 8",
            8.0,
        ),
        "h2-idle-timeout": (["--h2-idle-timeout", "9"], "h2-idle-timeout = 9", 9.0),
        "trusted-proxy": (
            ["--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "::1"],
            'trusted-proxy = ["10.0.0.0/8", "::1"]',
            ("10.0.0.0/8", "::1"),
        ),
        "buffer-limit": (["--buffer-limit", "20"], "buffer-limit = 20", 20),
        "sse-budget": (["--sse-budget", "30"], "sse-budget = 30", 30),
        "ping": (["--ping", "2.5"], "ping = 2.5", 2.5),
        "write-timeout": (["--write-timeout", "7"], "write-timeout = 7", 7.0),
        "max-connections": (["--max-connections", "50"], "max-connections = 50", 50),
        "max-streams": (["--max-streams", "100"], "max-streams = 100", 100),
        "access-log": (["--access-log", "json"], 'access-log = "json"', "json"),
        "http-parser": (
            ["--http-parser", "twisted"],
            'http-parser = "twisted"',
            "twisted",
        ),
        "gc-threshold": (["--gc-threshold", "0"], "gc-threshold = 0", 0),
        "hub": (
            ["--hub", "redis://10.0.0.5:6380/2"],
            'hub = "redis://10.0.0.5:6380/2"',
            "redis://10.0.0.5:6380/2",
        ),
        "hub-history": (["--hub-history", "10"], "hub-history = 10", 10),
        "hub-history-bytes": (
            ["--hub-history-bytes", "4096"],
            "hub-history-bytes = 4096",
            4096,
        ),
        "hub-history-age": (["--hub-history-age", "60"], "hub-history-age = 60", 60.0),
        "metrics": (["--metrics", "/metrics"], 'metrics = "/metrics"', "/metrics"),
        "client-script": (
            ["--client-script", "/sse.js"],
            'client-script = "/sse.js"',
            "/sse.js",
        ),
        "hub-presence-ttl": (
            ["--hub-presence-ttl", "9"],
            "hub-presence-ttl = 9",
            9.0,
        ),
        "rate-connections": (["--rate-connections", "50"], "rate-connections = 50", 50),
        "rate-requests": (["--rate-requests", "20"], "rate-requests = 20", 20),
        "rate-publishes": (["--rate-publishes", "5"], "rate-publishes = 5", 5),
        "token-key-file": (
            ["--token-key-file", "keys.txt"],
            'token-key-file = "keys.txt"',
            "keys.txt",
        ),
        "channel-policy-ttl": (
            ["--channel-policy-ttl", "5"],
            "channel-policy-ttl = 5",
            5.0,
        ),
        "runs-lease": (["--runs-lease", "4"], "runs-lease = 4", 4.0),
        "runs-retention": (["--runs-retention", "30"], "runs-retention = 30", 30.0),
        "runs-history-bytes": (
            ["--runs-history-bytes", "65536"],
            "runs-history-bytes = 65536",
            65536,
        ),
        "shutdown-grace": (["--shutdown-grace", "0"], "shutdown-grace = 0", 0.0),
        "debug": (["--debug"], "debug = true", True),
        "compress": (["--compress"], "compress = true", True),
    }


class ConfigFileTests(SynchronousTestCase):
    """``oxian.toml`` and ``--config`` (SPEC §8)."""

    def setUp(self) -> None:
        self.routes = os.path.abspath(make_tree(self.mktemp(), {"index.py": ""}))
        self.patch(os, "environ", {k: v for k, v in os.environ.items() if k != "PORT"})
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)

    def write(self, text: str, name: str = "oxian.toml") -> str:
        path = os.path.join(self.directory, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def parse(self, *args: str) -> Settings:
        options = Options()
        options.parseOptions(list(args))
        return options.settings

    def error(self, *args: str) -> str:
        """The usage error of a command line."""
        return str(self.assertRaises(usage.UsageError, self.parse, *args))

    def file_error(self, *args: str) -> str:
        """The one-line exit for a bad config file."""
        error = self.assertRaises(SystemExit, self.parse, *args)
        self.assertTrue(str(error.code).startswith("twistd oxian: "), error.code)
        return str(error.code)

    def test_every_option(self) -> None:
        """Every option, from the command line and from the file, alike."""
        table = every_option(self.routes)
        self.assertEqual(set(table), set(OPTIONS_BY_NAME))
        defaults = Settings()
        for name, (args, toml, expected) in table.items():
            attribute = OPTIONS_BY_NAME[name].attribute
            with self.subTest(option=name):
                self.assertNotEqual(getattr(defaults, attribute), expected)
                routes = [] if name == "routes" else ["--routes", self.routes]
                from_line = self.parse(*routes, *args)
                self.assertEqual(getattr(from_line, attribute), expected)
                path = self.write(toml + "\n", f"{attribute}.toml")
                from_file = self.parse(*routes, "--config", path)
                self.assertEqual(getattr(from_file, attribute), expected)

    def test_command_line_wins(self) -> None:
        path = self.write(
            f"routes = {self.routes!r}\nbody-limit = 10\nping = 3\n"
            'listen = ["tcp:1", "tcp:2"]\ndebug = true\n'
        )
        settings = self.parse(
            "--config", path, "--body-limit", "20", "--listen", "tcp:3"
        )
        self.assertEqual(settings.body_limit, 20)
        self.assertEqual(settings.ping, 3.0)
        self.assertEqual(settings.listen, ("tcp:3",))
        self.assertTrue(settings.debug)
        self.assertEqual(settings.routes, self.routes)

    def test_working_directory_file(self) -> None:
        """``./oxian.toml`` is read when present; ``--config`` replaces it."""
        self.write(f"routes = {self.routes!r}\nmax-streams = 5\n")
        other = self.write(f"routes = {self.routes!r}\nping = 1\n", "other.toml")
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(self.directory)
        self.assertEqual(self.parse().max_streams, 5)
        settings = self.parse("--config", other)
        self.assertEqual((settings.max_streams, settings.ping), (None, 1.0))

    def test_errors(self) -> None:
        """Each startup error says where and what."""
        routes = f"routes = {self.routes!r}\n"
        cases = [
            ("bodylimit = 1\n", "t.toml: unknown setting 'bodylimit' (known: "),
            (
                "body-limit = -1\n",
                "t.toml: body-limit: must be greater than 0 (got -1)",
            ),
            ("body-limit = 1.5\n", "t.toml: body-limit: expected a whole number"),
            ('ping = "soon"\n', "t.toml: ping: expected a number of seconds"),
            ("listen = 5\n", "t.toml: listen: expected a string or a list of strings"),
            ("debug = 1\n", "t.toml: debug: expected true or false"),
            (
                'cors-origin = ["https://a.example/"]\n',
                "t.toml: cors-origin: 'https://a.example/' is not an origin",
            ),
            ('cors-methods = "GET POST"\n', "'GET POST' is not a header or method"),
            ("[cors]\norigin = 1\n", "t.toml: unknown setting 'cors'"),
            ("body-limit = \n", "t.toml: not valid TOML: "),
            (
                'hub = "https://h"\n',
                "t.toml: hub: expected 'memory', redis[s]://host[:port][/db] or "
                "redis[s]+cluster://host:port[,host:port...]",
            ),
            (
                'hub = "redis+cluster://h:7000/1"\n',
                "t.toml: hub: a Redis Cluster has only database 0: no /db",
            ),
        ]
        for text, expected in cases:
            with self.subTest(text=text):
                path = self.write(routes + text, "t.toml")
                self.assertIn(expected, self.file_error("--config", path))

    def test_missing_file(self) -> None:
        missing = os.path.join(self.directory, "missing.toml")
        self.assertIn(
            f"{missing}: cannot read: No such file or directory",
            self.file_error("--config", missing),
        )

    def test_routes_from_file_must_exist(self) -> None:
        path = self.write("routes = 'no/such/dir'\n")
        self.assertIn(
            "routes 'no/such/dir' is not a directory", self.error("--config", path)
        )

    def test_bad_command_line_values(self) -> None:
        for args, expected in (
            (["--cors-origin", "example.com"], "--cors-origin: 'example.com' is not"),
            (["--cors-max-age", "-1"], "--cors-max-age: must be 0 or more"),
        ):
            with self.subTest(args=args):
                self.assertIn(expected, self.error("--routes", self.routes, *args))

    def test_app_reads_file(self) -> None:
        """``OxianApp(config=path)`` takes the same file."""
        path = self.write("body-limit = 99\ncors-origin = ['*']\n")
        app = OxianApp(self.routes, config=path, reactor=Clock())
        self.assertEqual(app.settings.body_limit, 99)
        self.assertEqual(app.settings.cors_origin, ("*",))
        bad = self.write("nope = 1\n", "bad.toml")
        self.assertRaises(ConfigError, OxianApp, self.routes, config=bad)

    def test_pipeline_error_stops_startup(self) -> None:
        """A broken pipeline file stops ``makeService`` with its file and line."""
        routes = make_tree(
            self.mktemp(), {"index.py": "", "api/middleware.py": "\ndef m(:\n"}
        )
        options = Options()
        options.parseOptions(["--routes", routes])
        error = self.assertRaises(SystemExit, makeService, options)
        self.assertIn("api/middleware.py:2", str(error.code))
