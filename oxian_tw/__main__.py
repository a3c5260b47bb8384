"""
``python -m oxian_tw routes DIR``: list a route tree's routes in precedence
order, one line each: methods, URL pattern, file.

``python -m oxian_tw dev --routes DIR [twistd oxian options]``: the server,
restarted when a file of the tree or the config file changes
(`oxian_tw._dev`).
"""

from __future__ import annotations

import argparse
import sys

from ._errors import RouteTreeError
from ._invoke import Handlers
from ._modules import RouteModules
from ._routing import RouteTable, discover


def list_routes(root: str) -> list[str]:
    """The lines ``python -m oxian_tw routes`` prints for ``root``."""
    modules = RouteModules(root)
    lines = []
    for route in RouteTable(discover(root)).routes:
        allow = Handlers.from_module(modules.load(route.file), route.file).allow()
        lines.append(f"{allow.replace(' ', ''):<40} {route.pattern:<32} {route.file}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m oxian_tw")
    commands = parser.add_subparsers(dest="command", required=True)
    routes = commands.add_parser("routes", help="list the routes of a route tree")
    routes.add_argument("directory", help="the route directory")
    dev = commands.add_parser(
        "dev",
        help="serve, restarting on every change (the dev extra: pip install '.[dev]')",
        description="Any other option is passed to twistd oxian.",
    )
    dev.add_argument("--routes", default="./routes", help="the route directory")
    args, rest = parser.parse_known_args(argv)
    if args.command == "dev":
        from ._dev import run

        return run(args.routes, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        for line in list_routes(args.directory):
            print(line)
    except RouteTreeError as exc:
        print(f"python -m oxian_tw: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
