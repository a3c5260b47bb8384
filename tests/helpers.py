"""
Helpers for the test suite: route trees on disk, and the switch that turns
skips of optional system pieces into failures on CI.
"""

from __future__ import annotations

import os
import signal
import textwrap
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase

REQUIRE_ALL = "OXIAN_TW_REQUIRE_ALL"


def make_tree(root: str, files: dict[str, str]) -> str:
    """
    Write ``files`` (relative path -> source, dedented) under ``root`` and
    return ``root``.
    """
    for relative, source in files.items():
        path = os.path.join(root, *relative.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(textwrap.dedent(source))
    os.makedirs(root, exist_ok=True)
    return root


class RoutesTestCase(SynchronousTestCase):
    """
    An app over the route tree ``routes`` (written anew for each test), on a
    ``Clock``, with a `TestClient`; log events are kept in ``logged``.
    """

    routes: dict[str, str] = {}
    config: dict[str, Any] = {}

    def setUp(self) -> None:
        from oxian_tw import OxianApp
        from oxian_tw.testing import TestClient

        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)
        self.root = make_tree(self.mktemp(), self.routes)
        self.clock = Clock()
        self.app = OxianApp(self.root, reactor=self.clock, config=self.config)
        self.client = TestClient(self.app)

    def log_text(self) -> str:
        """
        Everything logged since the test started, one event per line, with
        the exception of a logged failure.
        """
        return "\n".join(_event_text(e) for e in self.logged)

    def get(self, path: str, **kwargs: Any) -> Any:
        """``GET path`` whose head has arrived."""
        return self.successResultOf(self.client.get(path, **kwargs))

    def module(self, relative: str) -> Any:
        """The loaded route module of the file ``relative``."""
        return self.app._modules.load(relative)


def _event_text(event: dict[str, Any]) -> str:
    failure = event.get("log_failure")
    text = formatEvent(event)
    if failure is None:
        return text
    return f"{text}: {failure.type.__name__}: {failure.getErrorMessage()}"


def trickle_until_closed(
    sock: Any, piece: bytes, seconds: float, every: float = 0.3
) -> bytes:
    """
    Send ``piece`` about every ``every`` seconds (a slow client) until the
    server closes the connection or ``seconds`` pass; returns what it sent
    back.
    """
    import time

    received = b""
    sock.settimeout(every)
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        try:
            sock.sendall(piece)
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        received += chunk
    return received


def own_timers(clock: Any) -> list[Any]:
    """
    The active calls pending on ``clock`` besides a site's two shared
    deadline timers (`oxian_tw._deadlines.Deadlines`, one for all
    connections): what a request, stream or connection left behind.
    """
    return [
        c
        for c in clock.getDelayedCalls()
        if c.active() and "Deadlines._fire" not in c.func.__qualname__
    ]


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid`` in bytes (Linux ``/proc``)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def skip_unless(available: bool, reason: str) -> None:
    """
    Skip the calling test when an optional system piece is missing, or fail
    it when ``$OXIAN_TW_REQUIRE_ALL`` is set (as ``.ci/run`` does).
    """
    if available:
        return
    if os.environ.get(REQUIRE_ALL):
        raise AssertionError(f"{reason} (required: ${REQUIRE_ALL} is set)")
    raise SkipTest(reason)


def chromium_and_playwright() -> tuple[str, Any]:
    """
    Debian's ``chromium`` and Playwright's ``sync_playwright``; the calling
    test skips without them (fails under ``.ci/run``).
    """
    import shutil

    chromium = shutil.which("chromium")
    skip_unless(
        chromium is not None,
        "Debian's chromium is not installed (apt-get install chromium)",
    )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_unless(False, "playwright is not installed (pip install playwright)")
    assert chromium is not None
    return chromium, sync_playwright


def launch_chromium(playwright: Any, chromium: str, *args: str) -> Any:
    """A headless Chromium, sandbox and /dev/shm off (containers), ``args`` added."""
    return playwright.chromium.launch(
        executable_path=chromium,
        headless=True,
        args=["--no-sandbox", "--disable-dev-shm-usage", *args],
    )


#: What ``twistd oxian`` logs once it listens, with the port.
LISTENING = r"listening on http://[^ ]+:(\d+)/"


def twistd_command(
    *args: str, listen: str = "tcp:0:interface=127.0.0.1", reactor: str | None = None
) -> list[str]:
    """
    ``twistd -n oxian`` on an ephemeral 127.0.0.1 port (or ``listen``) with
    ``args``, run by this Python (so the checkout's plugin is found when it
    is on the path); ``reactor``: ``twistd -r`` it.
    """
    import sys

    return [
        sys.executable,
        "-c",
        "from twisted.scripts.twistd import run; run()",
        *(() if reactor is None else ("-r", reactor)),
        "-n",
        "--pidfile=",
        "oxian",
        "--listen",
        listen,
        *args,
    ]


class WatchedProcess:
    """
    A process whose output (stdout and stderr) is read as it comes, so a
    test can wait for a line instead of polling.

    :param command: the command line.
    :param cwd: its working directory.
    :param env: its whole environment (default: this process's).
    :param new_session: run it in a session (and process group) of its
        own, so that its children can be signalled with it.
    """

    def __init__(
        self,
        command: list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        new_session: bool = False,
    ) -> None:
        import queue
        import subprocess
        import threading

        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            text=True,
            start_new_session=new_session,
        )
        self.lines: list[str] = []
        self._drained = False
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> Any:
        """
        The match of ``pattern`` in the next line that has it.

        :raises AssertionError: when the process exits or ``timeout``
            seconds pass first (the process is killed then).
        """
        import queue
        import re
        import time

        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.process.kill()
                raise AssertionError(
                    f"no line matching {pattern!r} after {timeout} s:\n" + self.output()
                ) from None
            if line is None:
                self._drained = True
                raise AssertionError(
                    f"exited before a line matching {pattern!r}:\n" + self.output()
                )
            self.lines.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    def output(self, *, to_the_end: bool = False) -> str:
        """
        Everything printed so far; with ``to_the_end``, everything up to the
        end of its output (once it exited, the reader thread may still be
        draining the pipe).
        """
        import queue

        while not self._drained:
            try:
                line = (
                    self._queue.get(timeout=30)
                    if to_the_end
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if line is None:
                self._drained = True
                break
            self.lines.append(line)
        return "".join(self.lines)


class TwistdProcess(WatchedProcess):
    """
    A real ``twistd -n oxian`` on an ephemeral 127.0.0.1 port, for
    end-to-end tests. The port is read from twistd's own log line.

    :param args: ``twistd oxian`` arguments after the ``--listen``.
    :param cwd: its working directory.
    :param env: variables added to this process's environment.
    :param listen: the first ``--listen`` endpoint.
    :param listening: the log line (a regular expression) whose group is
        ``port``.
    """

    START_TIMEOUT = 30.0

    def __init__(
        self,
        *args: str,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        listen: str = "tcp:0:interface=127.0.0.1",
        listening: str = LISTENING,
        reactor: str | None = None,
    ) -> None:
        env = {**os.environ, **(env or {})}
        # The checkout, so that the plugin and package are found uninstalled too.
        top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (top, env.get("PYTHONPATH")) if p
        )
        super().__init__(
            twistd_command(*args, listen=listen, reactor=reactor), cwd=cwd, env=env
        )
        self.port = int(self.wait_for(listening, self.START_TIMEOUT).group(1))

    def port_of(self, listening: str) -> int:
        """The port in the log line matching ``listening`` (waiting for it)."""
        import re

        for line in self.lines:
            found = re.search(listening, line)
            if found:
                return int(found.group(1))
        return int(self.wait_for(listening, self.START_TIMEOUT).group(1))

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request; returns status, lower-cased headers and body."""
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            connection.close()

    def stop(self) -> int:
        """SIGTERM, wait, and return the exit status (``-15`` or ``0``)."""
        import signal

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        except Exception:
            self.process.kill()
            raise
        self.output(to_the_end=True)
        return code


def assert_clean_exit(
    test: SynchronousTestCase, server: TwistdProcess, errors_logged: bool = False
) -> None:
    """
    SIGTERM ends ``server`` cleanly (SPEC §1): status 0 or "terminated by
    SIGTERM", shutdown completed, and no traceback unless the test provoked
    one on purpose (``errors_logged``).
    """
    import signal

    code = server.stop()
    output = server.output()
    test.assertIn(code, (0, -signal.SIGTERM), output)
    test.assertIn("Server Shut Down", output)
    if not errors_logged:
        test.assertNotIn("Traceback", output)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on, for servers without port 0."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """
    A real ``redis-server`` on a free 127.0.0.1 port, in a directory of its
    own, without persistence; `stop` and `start` again keep the port.

    :param tls: ``(key, certificate)`` files: it speaks only TLS.
    :param password: the default user's (``requirepass``).
    """

    def __init__(
        self,
        directory: str,
        *,
        tls: tuple[str, str] | None = None,
        password: str | None = None,
    ) -> None:
        import shutil

        skip_unless(
            shutil.which("redis-server") is not None,
            "redis-server is not installed (Debian: apt-get install redis-server)",
        )
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.port = free_port()
        self.tls = tls
        self.password = password
        self.start()

    def url(self, db: int = 0) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        listen = ["--port", str(self.port)]
        if self.tls is not None:
            key, cert = (os.path.abspath(path) for path in self.tls)
            listen = ["--port", "0", "--tls-port", str(self.port)]
            listen += ["--tls-key-file", key, "--tls-cert-file", cert]
            listen += ["--tls-auth-clients", "no"]
        if self.password is not None:
            listen += ["--requirepass", self.password]
        self.server = WatchedProcess(
            [
                "redis-server",
                *listen,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.directory,
            ]
        )
        self.server.wait_for("Ready to accept connections", 10)

    def stop(self) -> None:
        process = self.server.process
        if process.poll() is None:
            self.resume()
            process.terminate()
            process.wait(timeout=10)

    def pause(self) -> None:
        """Freeze the server (``SIGSTOP``): connections stay, nothing answers."""
        self.server.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server go on (``SIGCONT``)."""
        self.server.process.send_signal(signal.SIGCONT)


class RedisCluster:
    """
    A real local Redis Cluster: ``primaries`` primaries with ``replicas``
    replicas each (``redis-server --cluster-enabled``, joined by
    ``redis-cli --cluster create``), on free 127.0.0.1 ports, without
    persistence; a node is declared failed after ``node_timeout_ms``.
    """

    def __init__(
        self,
        directory: str,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
    ) -> None:
        import shutil
        import subprocess

        skip_unless(
            shutil.which("redis-server") is not None
            and shutil.which("redis-cli") is not None,
            "redis-server and redis-cli are not installed "
            "(Debian: apt-get install redis-server)",
        )
        self.nodes: dict[int, WatchedProcess] = {}
        self.ports: list[int] = []
        for i in range(primaries * (1 + replicas)):
            where = os.path.abspath(os.path.join(directory, f"node{i}"))
            os.makedirs(where, exist_ok=True)
            port = free_port()
            self.ports.append(port)
            self.nodes[port] = WatchedProcess(
                [
                    "redis-server",
                    "--port",
                    str(port),
                    "--cluster-port",
                    str(free_port()),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    os.path.join(where, "nodes.conf"),
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    where,
                ]
            )
        for process in self.nodes.values():
            process.wait_for("Ready to accept connections", 10)
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_until_ok()

    def url(self, seeds: int = 1) -> str:
        """``redis+cluster://`` with the first ``seeds`` nodes."""
        nodes = ",".join(f"127.0.0.1:{port}" for port in self.ports[:seeds])
        return f"redis+cluster://{nodes}"

    def cli(self, port: int, *args: str) -> str:
        """A command to one node through ``redis-cli``."""
        import subprocess

        return subprocess.run(
            ["redis-cli", "-p", str(port), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout

    def wait_until_ok(self, timeout: float = 30.0) -> None:
        """
        Until every live node says ``cluster_state:ok`` and agrees on the
        map, and every replica is in sync with its primary.
        """
        import time

        deadline = time.monotonic() + timeout
        while True:
            alive = [p for p, n in self.nodes.items() if n.process.poll() is None]
            states = {self.cli(p, "CLUSTER", "INFO").split()[0] for p in alive}
            maps = {self._primary_ports(p) for p in alive}
            # A replica that never synced cannot take over: wait for the sync.
            links = {
                line
                for p in alive
                for line in self.cli(p, "INFO", "replication").split()
                if line.startswith("master_link_status:")
            }
            if (
                states == {"cluster_state:ok"}
                and len(maps) == 1
                and links <= {"master_link_status:up"}
            ):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"cluster not ok: {states}, {maps}")
            # No sleep: the next round asks the nodes again (each question
            # is a redis-cli process, which paces the loop).

    def _primary_ports(self, port: int) -> frozenset[int]:
        lines = self.cli(port, "CLUSTER", "NODES").splitlines()
        return frozenset(
            int(line.split()[1].split(":")[1].split("@")[0])
            for line in lines
            if "master" in line.split()[2] and "fail" not in line.split()[2]
        )

    def primary_of(self, slot: int) -> int:
        """The port of the primary serving ``slot``."""
        for line in self.cli(self.alive()[0], "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for part in fields[8:]:
                low, _, high = part.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return int(fields[1].split(":")[1].split("@")[0])
        raise AssertionError(f"no primary serves slot {slot}")

    def node_id(self, port: int) -> str:
        return self.cli(port, "CLUSTER", "MYID").strip()

    def alive(self) -> list[int]:
        return [p for p, n in self.nodes.items() if n.process.poll() is None]

    def kill(self, port: int) -> None:
        """``SIGKILL`` a node, as a crash would."""
        process = self.nodes[port].process
        process.kill()
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.nodes.values():
            if process.process.poll() is None:
                process.process.terminate()
        for process in self.nodes.values():
            process.process.wait(timeout=10)


def make_certificate(directory: str) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1; returns (key, cert) paths."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    os.makedirs(directory, exist_ok=True)
    key_path = os.path.join(directory, "key.pem")
    cert_path = os.path.join(directory, "cert.pem")
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


#: What ``twistd oxian`` logs once its TLS listener listens, with the port.
LISTENING_TLS = r"listening on https://[^ ]+:(\d+)/"


def tls_listener(directory: str) -> dict[str, str]:
    """
    ``TwistdProcess`` keywords for an ``ssl:`` listener on 127.0.0.1 with a
    certificate made by `make_certificate` in ``directory``.
    """
    key, cert = make_certificate(directory)
    return {
        "listen": f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
        "listening": LISTENING_TLS,
    }


def h2_get(connection: Any, path: str, scheme: str = "http") -> int:
    """Send ``GET path`` on a client-side ``h2`` connection; return its stream id."""
    stream_id: int = connection.get_next_available_stream_id()
    connection.send_headers(
        stream_id,
        [
            (":method", "GET"),
            (":path", path),
            (":scheme", scheme),
            (":authority", "127.0.0.1"),
        ],
        end_stream=True,
    )
    return stream_id
