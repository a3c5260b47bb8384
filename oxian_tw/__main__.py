"""
``python -m oxian_tw routes DIR``: list a route tree's routes in precedence
order, one line each: methods, URL pattern, file.
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
        allow = Handlers.from_module(modules.load(route.file)).allow()
        lines.append(f"{allow.replace(' ', ''):<40} {route.pattern:<32} {route.file}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m oxian_tw")
    commands = parser.add_subparsers(dest="command", required=True)
    routes = commands.add_parser("routes", help="list the routes of a route tree")
    routes.add_argument("directory", help="the route directory")
    args = parser.parse_args(argv)
    try:
        for line in list_routes(args.directory):
            print(line)
    except RouteTreeError as exc:
        print(f"python -m oxian_tw: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
