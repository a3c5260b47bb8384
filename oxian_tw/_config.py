# -*- test-case-name: tests.test_config -*-
"""
Settings (SPEC §8): one table of options that ``twistd oxian``, ``oxian.toml``
and ``OxianApp(config=...)`` all read, so a setting has one name, default and
parser everywhere.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ._body import FORM_FIELDS
from ._limits import GC_THRESHOLD
from ._listen import default_listen

#: Connection deadlines (SPEC §12.1), in seconds: the request head (and an
#: HTTP/2 header block) from its first byte, a request body without
#: progress, a TLS handshake, a new connection's first byte, keep-alive
#: between requests, an HTTP/2 connection without a stream. Compared with
#: nginx's, h2o's and Go's in docs/deployment.md.
HEADER_TIMEOUT = 15.0
BODY_TIMEOUT = 30.0
TLS_HANDSHAKE_TIMEOUT = 10.0
FIRST_BYTE_TIMEOUT = 15.0
KEEP_ALIVE_TIMEOUT = 30.0
H2_IDLE_TIMEOUT = 30.0

#: The hub's defaults, also those of its classes when built directly.
HUB_HISTORY = 1000
HUB_HISTORY_BYTES = 1024 * 1024
HUB_HISTORY_AGE = 3600.0
HUB_PRESENCE_TTL = 30.0

#: Runs' defaults (SPEC §15), also those of `oxian_tw.Runs` built directly.
RUNS_LEASE = 10.0
RUNS_RETENTION = 600.0
RUNS_HISTORY_BYTES = 8 * 1024 * 1024


class ConfigError(ValueError):
    """A setting is unknown or its value is invalid."""


# An HTTP token (a header or method name) and a serialised origin.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#\s]+")


def _whole_number(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("expected a whole number")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError("expected a whole number") from None


def _positive_int(value: Any) -> int:
    number = _whole_number(value)
    if number <= 0:
        raise ValueError("must be greater than 0")
    return number


def _non_negative_int(value: Any) -> int:
    number = _whole_number(value)
    if number < 0:
        raise ValueError("must be 0 or more")
    return number


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("expected a number of seconds") from None
    if not number >= 0 or number == float("inf"):
        raise ValueError("must be a finite number of seconds, 0 or more")
    return number


def _positive_seconds(value: Any) -> float:
    number = _seconds(value)
    if number == 0:
        raise ValueError("must be greater than 0")
    return number


def _base_path(value: Any) -> str:
    text = str(value)
    if not text.startswith("/"):
        raise ValueError("must start with '/'")
    return "/" + "/".join(p for p in text.split("/") if p)


def _optional_file(value: Any) -> str | None:
    text = str(value)
    return text or None


def _optional_path(value: Any) -> str | None:
    text = str(value)
    if text in ("", "off"):
        return None
    if not text.startswith("/"):
        raise ValueError("must start with '/' (or be 'off')")
    return text


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError("expected true or false")


def _strings(value: Any) -> list[str]:
    """One string or a list of them (a repeatable option)."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list | tuple) or not all(
        isinstance(v, str) for v in values
    ):
        raise ValueError("expected a string or a list of strings")
    return list(values)


def _listen(value: Any) -> tuple[str, ...]:
    values = _strings(value)
    if not values or not all(values):
        raise ValueError("expected one or more endpoint descriptions")
    return tuple(values)


def _names(value: Any) -> tuple[str, ...]:
    """Header or method names; commas separate names inside one string too."""
    names = [n.strip() for v in _strings(value) for n in v.split(",")]
    names = [n for n in names if n]
    for name in names:
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"{name!r} is not a header or method name")
    return tuple(names)


def _origins(value: Any) -> tuple[str, ...]:
    origins = [o.strip() for v in _strings(value) for o in v.split(",")]
    origins = [o for o in origins if o]
    for origin in origins:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise ValueError(
                f"{origin!r} is not an origin: use '*' or scheme://host[:port], "
                "without a path or a trailing '/'"
            )
    return tuple(origins)


def _hub(value: Any) -> str:
    from .hub import check_hub

    if not isinstance(value, str):
        raise ValueError("expected 'memory' or a Redis URL")
    check_hub(value)
    return value


def _networks(value: Any) -> tuple[str, ...]:
    """CIDR networks (``10.0.0.0/8``, ``::1``); kept as text, validated here."""
    import ipaddress

    networks = [n.strip() for v in _strings(value) for n in v.split(",")]
    networks = [n for n in networks if n]
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ValueError(
                f"{network!r} is not an IP network (e.g. 10.0.0.0/8, 127.0.0.1)"
            ) from None
    return tuple(networks)


def _access_log(value: Any) -> str:
    from ._accesslog import FORMATS

    if value not in FORMATS:
        raise ValueError(f"expected one of {', '.join(FORMATS)}")
    return str(value)


#: ``--http-parser`` values: llhttp in C (httptools), or Twisted's own.
HTTP_PARSERS = ("llhttp", "twisted")


def _http_parser(value: Any) -> str:
    if value not in HTTP_PARSERS:
        raise ValueError(f"expected one of {', '.join(HTTP_PARSERS)}")
    return str(value)


@attrs.frozen
class Option:
    """
    One setting.

    :ivar name: the long option name, also the config key.
    :ivar parse: turns a command-line string or config value into the value.
    :ivar flag: a switch without an argument.
    :ivar repeatable: may be given more than once (a list in config).
    """

    name: str
    parse: Callable[[Any], Any]
    help: str
    flag: bool = False
    repeatable: bool = False

    @property
    def attribute(self) -> str:
        """The `Settings` attribute: the name with ``_`` for ``-``."""
        return self.name.replace("-", "_")

    @property
    def default(self) -> Any:
        """
        The default, read from `Settings` (where every default is written,
        once); ``None`` for one computed when used (``listen``).
        """
        default = attrs.fields_dict(Settings)[self.attribute].default
        return None if isinstance(default, attrs.Factory) else default  # type: ignore[arg-type]


OPTIONS: tuple[Option, ...] = (
    Option("routes", str, "The route directory."),
    Option(
        "listen",
        _listen,
        "An endpoint to listen on (strports: tcp:8080, "
        "ssl:8443:privateKey=key.pem:certKey=cert.pem, unix:/path; or "
        "any:8080, every IPv4 and IPv6 interface); repeatable. Default "
        "any:8080, or any:$PORT (IPv4 alone where the host has no IPv6).",
        repeatable=True,
    ),
    Option("base-path", _base_path, "Serve the routes under this path."),
    Option(
        "cors-origin",
        _origins,
        "An origin allowed to read responses cross-origin (scheme://host[:port], "
        "or * for any); repeatable. Default: none, no CORS headers.",
        repeatable=True,
    ),
    Option(
        "cors-credentials",
        _flag,
        "Allow credentialed CORS requests (cookies, Authorization): the "
        "origin is echoed, never *.",
        flag=True,
    ),
    Option(
        "cors-methods",
        _names,
        "Methods a preflight allows (comma-separated or repeated). Default: "
        "the route's methods.",
        repeatable=True,
    ),
    Option(
        "cors-headers",
        _names,
        "Request headers a preflight allows (comma-separated or repeated). "
        "Default: those the preflight asks for.",
        repeatable=True,
    ),
    Option(
        "cors-expose-headers",
        _names,
        "Response headers cross-origin scripts may read (comma-separated or "
        "repeated). Default: none beyond the CORS-safelisted ones.",
        repeatable=True,
    ),
    Option(
        "cors-max-age",
        _non_negative_int,
        "Seconds a browser may cache a preflight answer. Default: not sent.",
    ),
    Option(
        "body-limit",
        _positive_int,
        "Largest request body in bytes; larger ones get 413.",
    ),
    Option(
        "header-timeout",
        _positive_seconds,
        "Seconds an HTTP/1.1 request head may take from its first byte; "
        "past it the connection gets 408 and is closed.",
    ),
    Option(
        "body-timeout",
        _positive_seconds,
        "Seconds a request body may go without progress; past it the request gets 408.",
    ),
    Option(
        "tls-handshake-timeout",
        _positive_seconds,
        "Seconds a TLS handshake may take; past it the connection is closed.",
    ),
    Option(
        "first-byte-timeout",
        _positive_seconds,
        "Seconds a new connection may wait before the first byte of its "
        "first request; past it the connection is closed.",
    ),
    Option(
        "keep-alive-timeout",
        _positive_seconds,
        "Seconds an HTTP/1.1 connection may wait for its next request; past "
        "it the connection is closed.",
    ),
    Option(
        "h2-idle-timeout",
        _positive_seconds,
        "Seconds an HTTP/2 connection may stay without an open stream; past "
        "it it gets GOAWAY and is closed.",
    ),
    Option(
        "form-fields",
        _positive_int,
        "Most fields a form body (urlencoded or multipart) may have; more get 413.",
    ),
    Option(
        "buffer-limit",
        _positive_int,
        "Bytes a stream may buffer for writes that were not awaited; past "
        "it the connection is aborted.",
    ),
    Option(
        "sse-budget",
        _positive_int,
        "Bytes of events an SSE stream may hold for a slow client; sends "
        "that were not awaited past it apply the stream's slow_consumer "
        "policy.",
    ),
    Option(
        "ping",
        _seconds,
        "Seconds of silence after which an SSE stream gets a ':' heartbeat; "
        "0 turns heartbeats off.",
    ),
    Option(
        "write-timeout",
        _positive_seconds,
        "Seconds a stream's buffer may stay undrained before the stream is "
        "closed as stuck.",
    ),
    Option(
        "max-connections",
        _positive_int,
        "Most client connections open at once; more get 503 and are closed. "
        "Default: the file-descriptor limit less 128.",
    ),
    Option(
        "trusted-proxy",
        _networks,
        "A proxy's address or network (CIDR) whose X-Request-Id (and, "
        "later, forwarded client address) is trusted; repeatable. Default: "
        "none.",
        repeatable=True,
    ),
    Option(
        "max-streams",
        _positive_int,
        "Most SSE streams open at once; more get 503 with Retry-After. "
        "Default unlimited.",
    ),
    Option(
        "hub",
        _hub,
        "Where hub channels live: 'memory' (this process), "
        "redis://[[user]:password@]host[:port][/db] (shared by every process "
        "using that Redis) or redis+cluster://host:port[,host:port...] (a "
        "Redis Cluster); rediss:// and rediss+cluster:// for TLS.",
    ),
    Option(
        "hub-history",
        _non_negative_int,
        "Events each hub channel keeps for replay to reconnecting clients.",
    ),
    Option(
        "hub-history-bytes",
        _non_negative_int,
        "Encoded bytes each hub channel keeps for replay.",
    ),
    Option(
        "hub-history-age",
        _seconds,
        "Seconds an event stays in its hub channel's history.",
    ),
    Option(
        "hub-presence-ttl",
        _positive_seconds,
        "Seconds a process that stopped without saying goodbye (killed) "
        "stays present on hub channels; it renews its presence every third "
        "of it.",
    ),
    Option(
        "rate-connections",
        _positive_int,
        "New connections a second per peer address (a burst of as many); "
        "past it 429 and closed. Default: off.",
    ),
    Option(
        "rate-requests",
        _positive_int,
        "Requests a second per client address (forwarded when the peer is a "
        "--trusted-proxy); past it 429. Default: off.",
    ),
    Option(
        "rate-publishes",
        _positive_int,
        "Publishes a second from requests (ctx.hub.publish) per subject or "
        "address; past it 429. Default: off.",
    ),
    Option(
        "token-key-file",
        _optional_file,
        "A file of stream token keys, one a line: the first signs, all "
        "verify (oxian_tw.tokens). Default: $OXIAN_TOKEN_KEY, if set.",
    ),
    Option(
        "channel-policy-ttl",
        _seconds,
        "Seconds a channel policy decision (channels.py) is kept per "
        "subject or address, channel and action; 0 asks every time.",
    ),
    Option(
        "runs-lease",
        _positive_seconds,
        "Seconds a run outlives its producing process unrenewed (killed): "
        "then it ends as interrupted. Renewed every third of it.",
    ),
    Option(
        "runs-retention",
        _positive_seconds,
        "Seconds a run is kept after its end (its events, its end, its "
        "snapshot); an attach then gets them, a start of its key nothing new.",
    ),
    Option(
        "runs-history-bytes",
        _positive_int,
        "Encoded bytes of events each run keeps; past it its oldest give way.",
    ),
    Option(
        "metrics",
        _optional_path,
        "Serve Prometheus metrics (requests, streams, hub, process) at this "
        "path, e.g. /metrics. Default: off.",
    ),
    Option(
        "client-script",
        _optional_path,
        "Serve oxian-sse.js, the browser SSE client (ES module), at this "
        "path, e.g. /oxian-sse.js. Default: off.",
    ),
    Option(
        "shutdown-grace",
        _seconds,
        "Seconds open SSE streams get to end on shutdown before they are cut.",
    ),
    Option(
        "access-log",
        _access_log,
        "One line per request when its response ends: 'combined' (the "
        "Combined Log Format, then request_id=, duration_ms=, ended=), 'json' "
        "(one JSON object per line) or 'off'.",
    ),
    Option(
        "http-parser",
        _http_parser,
        "What parses HTTP/1.1 requests: 'llhttp' (in C, with httptools; "
        "Twisted's when httptools cannot be imported) or 'twisted' (Twisted's "
        "own, in Python). Requests are the same twisted.web requests either "
        "way; docs/deployment.md says where the two differ.",
    ),
    Option(
        "gc-threshold",
        _non_negative_int,
        "twistd oxian only (it is the whole process's): the garbage "
        "collector's young-generation threshold; larger makes the full "
        "collections that pause every connection rarer. 0 keeps Python's "
        "(700).",
    ),
    Option(
        "debug",
        _flag,
        "Put tracebacks of unexpected errors in error bodies.",
        flag=True,
    ),
    Option(
        "compress",
        _flag,
        "Compress every response of a compressible type (streams and SSE "
        "too, plain ones from 1 KiB) with zstd, br or gzip as the client "
        "accepts (SPEC §17). Off: see docs/streaming.md before turning it on "
        "(BREACH).",
        flag=True,
    ),
)

OPTIONS_BY_NAME = {o.name: o for o in OPTIONS}


@attrs.frozen
class Settings:
    """The effective settings of an app; see `OPTIONS` for each."""

    routes: str = "./routes"
    listen: tuple[str, ...] = attrs.field(factory=default_listen)
    base_path: str = "/"
    cors_origin: tuple[str, ...] = ()
    cors_credentials: bool = False
    cors_methods: tuple[str, ...] | None = None
    cors_headers: tuple[str, ...] | None = None
    cors_expose_headers: tuple[str, ...] = ()
    cors_max_age: int | None = None
    body_limit: int = 1024 * 1024
    header_timeout: float = HEADER_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    tls_handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT
    first_byte_timeout: float = FIRST_BYTE_TIMEOUT
    keep_alive_timeout: float = KEEP_ALIVE_TIMEOUT
    h2_idle_timeout: float = H2_IDLE_TIMEOUT
    form_fields: int = FORM_FIELDS
    buffer_limit: int = 4 * 1024 * 1024
    sse_budget: int = 1024 * 1024
    ping: float = 15.0
    write_timeout: float = 60.0
    max_connections: int | None = None
    trusted_proxy: tuple[str, ...] = ()
    max_streams: int | None = None
    hub: str = "memory"
    hub_history: int = HUB_HISTORY
    hub_history_bytes: int = HUB_HISTORY_BYTES
    hub_history_age: float = HUB_HISTORY_AGE
    hub_presence_ttl: float = HUB_PRESENCE_TTL
    rate_connections: int | None = None
    rate_requests: int | None = None
    rate_publishes: int | None = None
    token_key_file: str | None = None
    channel_policy_ttl: float = 60.0
    runs_lease: float = RUNS_LEASE
    runs_retention: float = RUNS_RETENTION
    runs_history_bytes: int = RUNS_HISTORY_BYTES
    metrics: str | None = None
    client_script: str | None = None
    shutdown_grace: float = 5.0
    access_log: str = "combined"
    http_parser: str = "llhttp"
    gc_threshold: int = GC_THRESHOLD
    debug: bool = False
    compress: bool = False


def parse_config(
    mapping: Mapping[str, Any], *, where: str = "", command_line: bool = False
) -> dict[str, Any]:
    """
    Validate config keys (``body-limit`` or ``body_limit``) and their values:
    a dictionary of `Settings` attributes. A ``None`` value means "not set".

    :param where: prefixed to error messages (a file name).
    :param command_line: name options ``--body-limit`` in error messages.
    :raises ConfigError: naming an unknown key or a bad value.
    """
    prefix = f"{where}: " if where else ""
    dashes = "--" if command_line else ""
    values: dict[str, Any] = {}
    for key, raw in mapping.items():
        option = OPTIONS_BY_NAME.get(str(key).replace("_", "-"))
        if option is None:
            known = ", ".join(sorted(OPTIONS_BY_NAME))
            raise ConfigError(f"{prefix}unknown setting {key!r} (known: {known})")
        if raw is None:
            continue
        try:
            values[option.attribute] = option.parse(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"{prefix}{dashes}{option.name}: {exc} (got {raw!r})"
            ) from exc
    return values


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """
    The settings of a TOML file whose top-level keys are the long option
    names (``body-limit = 1048576``, ``cors-origin = ["*"]``).

    :raises ConfigError: when the file cannot be read or parsed, or has an
        unknown key or a bad value; the message names the file.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            document = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: not valid TOML: {exc}") from exc
    return parse_config(document, where=name)


def settings_from(mapping: Mapping[str, Any] | None) -> Settings:
    """
    `Settings` from config keys (``body-limit`` or ``body_limit``).

    :raises ConfigError: naming an unknown key or a bad value.
    """
    return Settings(**parse_config(mapping or {}))
