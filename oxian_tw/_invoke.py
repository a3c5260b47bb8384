# -*- test-case-name: tests.test_invoke -*-
"""
Handler lookup and invocation: the one place where what a user's callable
(plain, ``async def`` or Deferred-returning) gives is adapted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from types import CoroutineType, ModuleType, NoneType
from typing import Any

import attrs
from twisted.internet.defer import Deferred

from ._coroutines import drive
from ._declared import adapt
from ._errors import RouteTreeError

_METHOD = re.compile("[A-Z]+")
STANDARD_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def call(fn: Callable[..., Any], *args: Any) -> Any:
    """
    Call ``fn`` and adapt what it gives: a coroutine becomes a cancellable
    Deferred (`oxian_tw._coroutines.drive`: asyncio awaitables and
    Deferreds alike on the asyncio reactor); a Deferred or a plain value is
    returned as is. Exceptions propagate. A Deferred is made only when
    something is asynchronous.
    """
    result = fn(*args)
    if isinstance(result, CoroutineType):
        return drive(result)
    return result


# What handlers mostly return: surely not Deferreds.
_PLAIN = frozenset({str, bytes, dict, list, tuple, int, float, bool, NoneType})


def is_deferred(value: Any) -> bool:
    """
    Whether ``value`` is a Deferred. ``Deferred`` is an ABC (``Awaitable``),
    so ``isinstance`` against it goes through ``ABCMeta``; the plain values
    a handler mostly returns are told apart without that.
    """
    cls = type(value)
    return cls is Deferred or (cls not in _PLAIN and isinstance(value, Deferred))


async def call_async(fn: Callable[..., Any], *args: Any) -> Any:
    """
    ``fn(*args)``, awaited: the value, however ``fn`` gives it. A coroutine
    is awaited in the caller's (one driver for a whole pipeline).
    """
    result = fn(*args)
    if isinstance(result, CoroutineType | Deferred):
        return await result
    return result


@attrs.frozen
class Handlers:
    """
    The method handlers of one route module, resolved once at startup.

    :ivar methods: upper-case exports (callables, not classes, so an imported
        ``UUID`` is no method) by name.
    :ivar default: the ``default`` export, serving every method.
    """

    methods: Mapping[str, Callable[..., Any]]
    default: Callable[..., Any] | None
    #: The handlers by the method as it comes off the wire (bytes),
    #: ``HEAD`` falling back to ``GET``: what `for_method` reads.
    by_wire: Mapping[bytes, Callable[..., Any]] = attrs.field(init=False)

    @by_wire.default
    def _by_wire(self) -> Mapping[bytes, Callable[..., Any]]:
        table = {name.encode("ascii"): fn for name, fn in self.methods.items()}
        if b"HEAD" not in table and b"GET" in table:
            table[b"HEAD"] = table[b"GET"]
        return table

    @classmethod
    def from_module(cls, module: ModuleType, file: str = "") -> Handlers:
        """
        Collect the handlers a route module exports, each adapted to the
        type its ``data`` declares (`oxian_tw._declared.adapt`).

        :param file: the route file, for errors.
        :raises RouteTreeError: for a declared type no rule converts (SPEC
            §3: said at start, never at request time).
        """
        try:
            methods = {
                name: adapt(value)
                for name, value in vars(module).items()
                if _METHOD.fullmatch(name)
                and callable(value)
                and not isinstance(value, type)
            }
            default = getattr(module, "default", None)
            default = adapt(default) if callable(default) else None
        except TypeError as exc:
            raise RouteTreeError(f"{file or module.__name__}: {exc}") from None
        return cls(methods=methods, default=default)

    def for_method(self, method: bytes) -> Callable[..., Any] | None:
        """The handler for ``method`` (as sent); ``HEAD`` falls back to ``GET``."""
        return self.by_wire.get(method, self.default)

    def allow(self) -> str:
        """
        The ``Allow`` header: the exports, ``HEAD`` with ``GET``, and
        ``OPTIONS`` (answered automatically when not exported); ``default``
        allows every standard method.
        """
        methods = set(self.methods)
        if self.default is not None:
            methods.update(STANDARD_METHODS)
        if "GET" in methods:
            methods.add("HEAD")
        methods.add("OPTIONS")
        return ", ".join(sorted(methods, key=_method_order))


def _method_order(method: str) -> tuple[int, str]:
    if method in STANDARD_METHODS:
        return STANDARD_METHODS.index(method), ""
    return len(STANDARD_METHODS), method
