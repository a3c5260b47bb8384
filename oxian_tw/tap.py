# -*- test-case-name: tests.test_tap -*-
"""
``twistd oxian``: command-line options and ``makeService``.

The options come from the same table as ``OxianApp(config=...)``
(`oxian_tw._config.OPTIONS`).
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from ._app import OxianApp
from ._config import OPTIONS, OPTIONS_BY_NAME, ConfigError, default_listen
from ._errors import RouteTreeError


class Options(usage.Options):
    """``twistd oxian`` options (SPEC §8)."""

    synopsis = "[options]"
    longdesc = (
        "Serve a tree of Python route files: "
        "twistd -n oxian --routes ./routes --listen tcp:8080"
    )
    optParameters = [
        [o.name, None, None if o.repeatable else o.default, o.help]
        for o in OPTIONS
        if not o.flag and not o.repeatable
    ]
    optFlags = [[o.name, None, o.help] for o in OPTIONS if o.flag]
    compData = usage.Completions(
        optActions={"routes": usage.CompleteDirs(descr="route directory")}
    )

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        self["listen"].append(description)

    opt_listen.__doc__ = OPTIONS_BY_NAME["listen"].help

    def postOptions(self) -> None:
        if not os.path.isdir(self["routes"]):
            raise usage.UsageError(f"--routes {self['routes']!r} is not a directory")
        if not self["listen"]:
            self["listen"] = list(default_listen())
        for option in OPTIONS:
            if option.flag:
                self[option.name] = bool(self[option.name])
            elif self[option.name] is not None:
                try:
                    self[option.name] = option.parse(self[option.name])
                except (TypeError, ValueError) as exc:
                    raise usage.UsageError(f"--{option.name}: {exc}") from exc

    def settings(self) -> dict[str, Any]:
        """The parsed options as config keys."""
        return {o.name: self[o.name] for o in OPTIONS}


def makeService(options: Options) -> IService:
    """Build the app for ``options`` and a service listening as asked."""
    settings = options.settings()
    try:
        app = OxianApp(settings["routes"], config=settings)
    except (RouteTreeError, ConfigError) as exc:
        raise SystemExit(f"twistd oxian: {exc}") from None
    return app.service()
