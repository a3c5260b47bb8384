# -*- test-case-name: tests.test_config -*-
"""
Settings (SPEC §8): one table of options that both ``twistd oxian`` and
``OxianApp(config=...)`` read, so a setting has one name, default and
parser everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import attrs


class ConfigError(ValueError):
    """A setting is unknown or its value is invalid."""


def _positive_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number")
    number = int(value)
    if number <= 0:
        raise ValueError("must be greater than 0")
    return number


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds")
    number = float(value)
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


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError("expected true or false")


def _listen(value: Any) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else list(value)
    if not values or not all(isinstance(v, str) and v for v in values):
        raise ValueError("expected one or more endpoint descriptions")
    return tuple(values)


def default_listen() -> tuple[str, ...]:
    """``tcp:$PORT`` when ``PORT`` is set, else ``tcp:8080``."""
    port = os.environ.get("PORT")
    return (f"tcp:{port}",) if port else ("tcp:8080",)


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
    default: Any
    parse: Callable[[Any], Any]
    help: str
    flag: bool = False
    repeatable: bool = False

    @property
    def attribute(self) -> str:
        """The `Settings` attribute: the name with ``_`` for ``-``."""
        return self.name.replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option("routes", "./routes", str, "The route directory."),
    Option(
        "listen",
        None,
        _listen,
        "An endpoint to listen on (strports: tcp:8080, "
        "ssl:8443:privateKey=key.pem:certKey=cert.pem, unix:/path); "
        "repeatable. Default tcp:8080, or tcp:$PORT.",
        repeatable=True,
    ),
    Option("base-path", "/", _base_path, "Serve the routes under this path."),
    Option(
        "body-limit",
        1024 * 1024,
        _positive_int,
        "Largest request body in bytes; larger ones get 413.",
    ),
    Option(
        "buffer-limit",
        4 * 1024 * 1024,
        _positive_int,
        "Bytes a stream may buffer for writes that were not awaited; past "
        "it the connection is aborted.",
    ),
    Option(
        "sse-budget",
        1024 * 1024,
        _positive_int,
        "Bytes of events an SSE stream may hold for a slow client; sends "
        "that were not awaited past it apply the stream's slow_consumer "
        "policy.",
    ),
    Option(
        "ping",
        15.0,
        _seconds,
        "Seconds of silence after which an SSE stream gets a ':' heartbeat; "
        "0 turns heartbeats off.",
    ),
    Option(
        "write-timeout",
        60.0,
        _positive_seconds,
        "Seconds a stream's buffer may stay undrained before the stream is "
        "closed as stuck.",
    ),
    Option(
        "max-streams",
        None,
        _positive_int,
        "Most SSE streams open at once; more get 503 with Retry-After. "
        "Default unlimited.",
    ),
    Option(
        "shutdown-grace",
        5.0,
        _seconds,
        "Seconds open SSE streams get to end on shutdown before they are cut.",
    ),
    Option(
        "debug",
        False,
        _flag,
        "Put tracebacks of unexpected errors in error bodies.",
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
    body_limit: int = 1024 * 1024
    buffer_limit: int = 4 * 1024 * 1024
    sse_budget: int = 1024 * 1024
    ping: float = 15.0
    write_timeout: float = 60.0
    max_streams: int | None = None
    shutdown_grace: float = 5.0
    debug: bool = False


def settings_from(mapping: Mapping[str, Any] | None) -> Settings:
    """
    `Settings` from config keys (``body-limit`` or ``body_limit``).

    :raises ConfigError: naming an unknown key or a bad value.
    """
    values: dict[str, Any] = {}
    for key, raw in (mapping or {}).items():
        option = OPTIONS_BY_NAME.get(str(key).replace("_", "-"))
        if option is None:
            known = ", ".join(sorted(OPTIONS_BY_NAME))
            raise ConfigError(f"unknown setting {key!r} (known: {known})")
        if raw is None:
            continue
        try:
            values[option.attribute] = option.parse(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad value for {option.name}: {raw!r}: {exc}") from exc
    return Settings(**values)
