# -*- test-case-name: tests.test_routing -*-
"""
File discovery and the route table (SPEC §2).

Pure: no Twisted, no imports of route files. ``discover`` turns a directory
into frozen `Route` values; `RouteTable` orders them by positional precedence
and matches already percent-decoded path segments.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Iterable, Sequence

import attrs

from ._errors import RouteTreeError

PIPELINE_FILES = frozenset({"dependencies", "middleware", "interceptors", "channels"})

_PARAM = re.compile(r"\[([A-Za-z0-9_-]+)\]")
_CATCH_ALL = re.compile(r"\[\.\.\.([A-Za-z0-9_-]+)\]")
_UNSAFE_CHARS = ("/", "\\", "\x00")


class Kind(enum.IntEnum):
    """Segment kinds; the value is the precedence rank (lower wins)."""

    STATIC = 0
    PARAM = 1
    CATCH_ALL = 2


@attrs.frozen
class Segment:
    """One segment of a route pattern: a literal, or a named parameter."""

    kind: Kind
    value: str

    @property
    def text(self) -> str:
        """How the segment reads in a pattern (``users``, ``:id``, ``*path``)."""
        return {Kind.STATIC: "", Kind.PARAM: ":", Kind.CATCH_ALL: "*"}[
            self.kind
        ] + self.value


@attrs.frozen
class Route:
    """
    A route file and the URL pattern it serves.

    :ivar segments: the pattern's segments, left to right.
    :ivar file: the file's path relative to the route root, ``/``-separated.
    """

    segments: tuple[Segment, ...]
    file: str
    #: The URL pattern, e.g. ``/stocks/:symbol/stream`` (read per request,
    #: so computed once).
    pattern: str = attrs.field(init=False)

    @pattern.default
    def _pattern(self) -> str:
        return "/" + "/".join(s.text for s in self.segments)

    @property
    def is_static(self) -> bool:
        """True when every segment is a literal."""
        return all(s.kind is Kind.STATIC for s in self.segments)

    def precedence_key(self) -> tuple[tuple[int, str], ...]:
        """
        Sort key: segments compared left to right, static before param before
        catch-all at the first difference; literals compare by text only so
        that the order is total and never depends on the filesystem. Two
        routes with equal keys serve the same URLs.
        """
        return tuple(
            (s.kind, s.value if s.kind is Kind.STATIC else "") for s in self.segments
        )


@attrs.frozen
class Match:
    """A matched route with its decoded path parameters."""

    route: Route
    params: dict[str, str | list[str]]


def _segment(token: str, file: str) -> Segment:
    catch_all = _CATCH_ALL.fullmatch(token)
    if catch_all:
        return Segment(Kind.CATCH_ALL, catch_all.group(1))
    param = _PARAM.fullmatch(token)
    if param:
        return Segment(Kind.PARAM, param.group(1))
    if token.startswith("[") or token.endswith("]"):
        raise RouteTreeError(
            f"{file}: malformed parameter {token!r}; use [name] or [...name] "
            "with letters, digits, '_' or '-'"
        )
    return Segment(Kind.STATIC, token)


def is_private(name: str) -> bool:
    """A file or folder name that is never a route (helpers, caches)."""
    return name.startswith(("_", "."))


def route_for_file(relative: str) -> Route:
    """
    The route a ``.py`` file at ``relative`` (``/``-separated, under the
    route root) serves.

    :raises RouteTreeError: for malformed names, a catch-all that is not the
        last segment, or a parameter name used twice.
    """
    parts = relative[: -len(".py")].split("/")
    if parts[-1] == "index":
        parts = parts[:-1]
    segments = tuple(_segment(part, relative) for part in parts)
    names = [s.value for s in segments if s.kind is not Kind.STATIC]
    if len(names) != len(set(names)):
        raise RouteTreeError(f"{relative}: a parameter name is used twice")
    for s in segments[:-1]:
        if s.kind is Kind.CATCH_ALL:
            raise RouteTreeError(
                f"{relative}: a catch-all [...{s.value}] must be the last segment"
            )
    return Route(segments=segments, file=relative)


def walk(root: str) -> Iterable[tuple[str, list[str]]]:
    """
    Yield ``(relative_dir, file_names)`` for every public folder under
    ``root``, sorted, skipping private folders and ``__pycache__``.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not is_private(d))
        relative = os.path.relpath(dirpath, root).replace(os.sep, "/")
        yield ("" if relative == "." else relative), sorted(filenames)


def discover(root: str) -> list[Route]:
    """
    Every route under the directory ``root``.

    :raises RouteTreeError: when ``root`` is not a directory, a name is
        malformed, or two files map to the same pattern (naming both).
    """
    if not os.path.isdir(root):
        raise RouteTreeError(f"route directory {root!r} does not exist")
    seen: dict[tuple[tuple[int, str], ...], Route] = {}
    for relative_dir, files in walk(root):
        for name in files:
            stem, ext = os.path.splitext(name)
            if ext != ".py" or is_private(name) or stem in PIPELINE_FILES:
                continue
            relative = f"{relative_dir}/{name}" if relative_dir else name
            route = route_for_file(relative)
            other = seen.get(route.precedence_key())
            if other is not None:
                raise RouteTreeError(
                    f"{other.file} and {route.file} both map to {route.pattern}"
                )
            seen[route.precedence_key()] = route
    return list(seen.values())


def is_unsafe(segment: str) -> bool:
    """A decoded segment that could escape its place (``%2F``, ``..``, NUL)."""
    return segment == ".." or any(c in segment for c in _UNSAFE_CHARS)


class RouteTable:
    """
    Routes in precedence order, matched against decoded path segments.

    A fully static route that equals the path always wins (at every position
    it has a literal where any other match has a parameter), so those are a
    dictionary lookup; the others are tried in precedence order.
    """

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes: tuple[Route, ...] = tuple(sorted(routes, key=Route.precedence_key))
        self._static = {
            tuple(s.value for s in r.segments): r for r in self.routes if r.is_static
        }
        self._dynamic = tuple(r for r in self.routes if not r.is_static)

    def match(self, segments: Sequence[str]) -> Match | None:
        """
        The route serving ``segments`` (percent-decoded, empty ones removed),
        or ``None``. A segment that is unsafe as a parameter matches nothing.
        """
        if any(is_unsafe(s) for s in segments):
            return None
        route = self._static.get(tuple(segments))
        if route is not None:
            return Match(route, {})
        for route in self._dynamic:
            params = _bind(route.segments, segments)
            if params is not None:
                return Match(route, params)
        return None


def _bind(
    pattern: tuple[Segment, ...], segments: Sequence[str]
) -> dict[str, str | list[str]] | None:
    params: dict[str, str | list[str]] = {}
    for index, seg in enumerate(pattern):
        if seg.kind is Kind.CATCH_ALL:
            rest = list(segments[index:])
            if not rest:
                return None
            params[seg.value] = rest
            return params
        if index >= len(segments):
            return None
        if seg.kind is Kind.STATIC:
            if seg.value != segments[index]:
                return None
        else:
            params[seg.value] = segments[index]
    return params if len(segments) == len(pattern) else None
