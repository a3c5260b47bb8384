# -*- test-case-name: tests.test_tap -*-
"""
``twistd oxian``: command-line options and ``makeService``.

The options come from the same table as ``oxian.toml`` and
``OxianApp(config=...)`` (`oxian_tw._config.OPTIONS`). Precedence: the
command line, then the config file (``--config``, else ``./oxian.toml`` when
present), then the defaults.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import attrs
from twisted.application.service import IService
from twisted.logger import Logger
from twisted.python import usage

from ._app import OxianApp
from ._config import (
    OPTIONS,
    ConfigError,
    Option,
    Settings,
    parse_config,
    read_config_file,
)
from ._errors import RouteTreeError
from ._limits import default_max_connections, raise_fd_limit, set_gc_threshold
from ._listen import Listener

#: Read from the working directory when ``--config`` is not given.
DEFAULT_CONFIG = "oxian.toml"


def _with_default(option: Option) -> str:
    if option.default in (None, (), False):
        return option.help
    default = option.default
    if isinstance(default, float) and default.is_integer():
        default = int(default)
    return f"{option.help} [default: {default}]"


class Options(usage.Options):
    """``twistd oxian`` options (SPEC §8)."""

    synopsis = "[options]"
    longdesc = (
        "Serve a tree of Python route files: "
        "twistd -n --pidfile= oxian --routes ./routes --listen tcp:8080. Every option "
        "may also be set in a TOML file (--config, or ./oxian.toml) by its "
        "long name; the command line wins."
    )
    optParameters = [
        [
            "config",
            None,
            None,
            "A TOML file of settings keyed by the long option names "
            f"[default: ./{DEFAULT_CONFIG} when present].",
        ],
        *(
            [o.name, None, None, _with_default(o)]
            for o in OPTIONS
            if not o.flag and not o.repeatable
        ),
    ]
    optFlags = [[o.name, None, o.help] for o in OPTIONS if o.flag]
    compData = usage.Completions(
        optActions={
            "routes": usage.CompleteDirs(descr="route directory"),
            "config": usage.CompleteFiles("*.toml", descr="config file"),
        }
    )

    #: The effective settings, once the options are parsed.
    settings: Settings

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        for option in OPTIONS:
            if option.repeatable:
                self[option.name] = []

    def postOptions(self) -> None:
        path = self["config"]
        if path is None and os.path.isfile(DEFAULT_CONFIG):
            path = DEFAULT_CONFIG
        try:
            from_file = read_config_file(path) if path is not None else {}
        except ConfigError as exc:
            # A mistake in the file, not in the usage: one line, no help.
            raise SystemExit(f"twistd oxian: {exc}") from None
        given = {o.name: self._given(o) for o in OPTIONS}
        try:
            from_line = parse_config(given, command_line=True)
        except ConfigError as exc:
            raise usage.UsageError(str(exc)) from exc
        self.settings = Settings(**{**from_file, **from_line})
        if not os.path.isdir(self.settings.routes):
            raise usage.UsageError(
                f"routes {self.settings.routes!r} is not a directory"
            )

    def _given(self, option: Option) -> Any:
        """What the command line said for ``option``; ``None`` if nothing."""
        value = self[option.name]
        if option.flag:
            return True if value else None
        if option.repeatable:
            return value or None
        return value


def _collect(option: Option) -> Any:
    def opt(self: Options, value: str) -> None:
        self[option.name].append(value)

    opt.__doc__ = _with_default(option)
    return opt


for _option in OPTIONS:
    if _option.repeatable:
        setattr(Options, "opt_" + _option.attribute, _collect(_option))


_log = Logger()


def makeService(options: Options) -> IService:
    """Build the app for ``options`` and a service listening as asked."""
    settings = options.settings
    limit = raise_fd_limit()
    if settings.max_connections is None:
        settings = attrs.evolve(
            settings, max_connections=default_max_connections(limit)
        )
    _log.info(
        "At most {max_connections} connections (file-descriptor limit {limit})",
        max_connections=settings.max_connections,
        limit=limit,
    )
    _log.info(
        "Garbage collector thresholds {thresholds} (--gc-threshold)",
        thresholds=set_gc_threshold(settings.gc_threshold),
    )
    config = attrs.asdict(settings, recurse=False)
    try:
        app = OxianApp(settings.routes, config=config)
    except (RouteTreeError, ConfigError) as exc:
        raise SystemExit(f"twistd oxian: {exc}") from None
    if _twistd_logs_to_stdout(getattr(options, "parent", None)):
        # Where twistd logs anyway; one write per reactor turn instead of
        # an event through the logging system per request.
        app._log_requests_to(sys.stdout)
    service = app.service()
    for listener in service:  # type: ignore[attr-defined]
        if isinstance(listener, Listener):
            # A port that cannot be bound ends twistd with status 1.
            listener.fatal = True
    return service


def _twistd_logs_to_stdout(twistd: Any) -> bool:
    """
    Whether twistd's own options (``-n``, ``--logfile``, ``--syslog``,
    ``--logger``) send its log to standard output.
    """
    if twistd is None or not hasattr(twistd, "get"):
        return False
    if twistd.get("syslog") or twistd.get("logger"):
        return False
    logfile = twistd.get("logfile")
    return logfile == "-" or (bool(twistd.get("nodaemon")) and not logfile)
