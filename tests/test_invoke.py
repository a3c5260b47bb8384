"""
Tests for `oxian_tw._invoke`: handler lookup and the one place handler
results are adapted.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw._invoke import Handlers, call, is_deferred


class IsDeferredTests(SynchronousTestCase):
    def test_deferreds(self) -> None:
        """Deferreds and their subclasses are told apart from plain values."""
        self.assertTrue(is_deferred(Deferred()))
        self.assertTrue(is_deferred(succeed(1)))
        self.assertTrue(is_deferred(DeferredList([])))

    def test_plain_values(self) -> None:
        for value in ["s", b"b", {}, [], (), 1, 1.5, True, None, object()]:
            self.assertFalse(is_deferred(value), value)


class CallTests(SynchronousTestCase):
    def test_adapts(self) -> None:
        """A coroutine becomes a Deferred; anything else is returned as is."""

        async def coroutine(x: int) -> int:
            return x + 1

        d = succeed(3)
        self.assertEqual(self.successResultOf(call(coroutine, 1)), 2)
        self.assertIs(call(lambda: d), d)
        self.assertEqual(call(lambda x: x * 2, 4), 8)


class HandlersTests(SynchronousTestCase):
    def module(self, **exports: Any) -> ModuleType:
        module = ModuleType("route")
        vars(module).update(exports)
        return module

    def test_for_method(self) -> None:
        """By the method as sent; HEAD falls back to GET, then ``default``."""

        def get(data: Any, ctx: Any) -> None: ...

        def post(data: Any, ctx: Any) -> None: ...

        def default(data: Any, ctx: Any) -> None: ...

        handlers = Handlers.from_module(self.module(GET=get, POST=post))
        self.assertIs(handlers.for_method(b"GET"), get)
        self.assertIs(handlers.for_method(b"HEAD"), get)
        self.assertIs(handlers.for_method(b"POST"), post)
        self.assertIsNone(handlers.for_method(b"PUT"))
        handlers = Handlers.from_module(self.module(POST=post, default=default))
        self.assertIs(handlers.for_method(b"HEAD"), default)
        self.assertIs(handlers.for_method(b"PUT"), default)
        self.assertIs(handlers.for_method(b"POST"), post)

    def test_exports(self) -> None:
        """Upper-case callables only, classes excluded."""

        def put(data: Any, ctx: Any) -> None: ...

        class UUID:
            pass

        handlers = Handlers.from_module(self.module(PUT=put, UUID=UUID, X=1))
        self.assertEqual(dict(handlers.methods), {"PUT": put})
        self.assertEqual(handlers.allow(), "PUT, OPTIONS")
