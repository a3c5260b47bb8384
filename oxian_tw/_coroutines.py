# -*- test-case-name: tests.test_coroutines,tests.test_asyncio -*-
"""
Running the app's coroutines (SPEC §14): `drive` turns one into a
cancellable Deferred, whatever it awaits.

- On the asyncio reactor (an asyncio event loop runs this thread), the
  coroutine runs as an asyncio ``Task``: asyncio libraries find the task
  and loop they expect (``asyncio.timeout``, anyio's cancel scopes under
  httpx). Deferreds awaited inside it are bridged: the task waits on a
  future that their result sets, and cancelling the task cancels the
  Deferred it waits on. Cancelling the returned Deferred cancels the task:
  ``asyncio.CancelledError`` at the coroutine's current ``await``, its
  ``finally`` blocks run.
- On any other reactor there is no asyncio loop to run asyncio
  awaitables: the coroutine runs as Twisted runs coroutines
  (``Deferred.fromCoroutine``, at once up to its first ``await``), and
  awaiting an asyncio future or calling an asyncio function fails with
  `AsyncioReactorRequired`, which names the fix, instead of asyncio's "no
  running event loop".

Contextvars carry through either way (one copied context per coroutine).
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

#: What asyncio raises when asked for a loop none runs, or when a
#: coroutine awaits one of its futures outside a task: turned into
#: `AsyncioReactorRequired`.
_ASYNCIO_MESSAGES = ("no running event loop", "await wasn't used with future")

#: Both kinds of cancellation a cancelled handler may end with.
CANCELLED = (CancelledError, asyncio.CancelledError)


class AsyncioReactorRequired(RuntimeError):
    """
    A coroutine awaited an asyncio awaitable on a reactor without asyncio.
    """

    def __init__(self) -> None:
        super().__init__(
            "this code awaits asyncio (asyncio.sleep, httpx, asyncpg, "
            "redis.asyncio...), which needs the asyncio reactor: run "
            "`twistd -r asyncio oxian ...`, or install "
            "twisted.internet.asyncioreactor before anything imports the "
            "reactor (docs/asyncio.md)"
        )


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The asyncio loop running this thread (the asyncio reactor's), if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def drive(coroutine: Coroutine[Any, Any, Any]) -> Deferred[Any]:
    """
    Run ``coroutine`` (see the module docstring): a Deferred of its result
    that cancels it when cancelled.
    """
    loop = running_loop()
    if loop is None:
        return Deferred.fromCoroutine(coroutine).addErrback(_explain)
    task = loop.create_task(_bridged(coroutine, loop))
    return Deferred.fromFuture(task)


def _explain(failure: Failure) -> Failure:
    """asyncio's own error for a missing loop, as one that names the fix."""
    error = failure.value
    if isinstance(error, RuntimeError) and str(error) in _ASYNCIO_MESSAGES:
        raise AsyncioReactorRequired() from error
    return failure


@types.coroutine
def _bridged(
    coroutine: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop
) -> Generator[Any, Any, Any]:
    """
    Step ``coroutine`` inside an asyncio task: what it yields for asyncio
    goes to the task as it is; a Deferred it waits on becomes a future.
    """
    send, throw = coroutine.send, coroutine.throw
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            yielded = send(value) if error is None else throw(error)
        except StopIteration as stop:
            return stop.value
        value = error = None
        if isinstance(yielded, Deferred):
            try:
                # The Deferred keeps its result: the coroutine, resumed,
                # reads it from the Deferred itself (``await d``).
                yield from _fired(yielded, loop).__await__()
            except BaseException as exc:
                yielded.cancel()
                # Its failure (a CancelledError) is ours, not unhandled.
                yielded.addErrback(_consumed)
                error = exc
        else:
            try:
                value = yield yielded
            except BaseException as exc:
                error = exc


def _fired(deferred: Deferred[Any], loop: asyncio.AbstractEventLoop) -> Any:
    """A future done once ``deferred`` has fired (its result left in place)."""
    future = loop.create_future()

    def fired(result: Any) -> Any:
        if not future.done():
            future.set_result(None)
        return result

    deferred.addBoth(fired)
    return future


def _consumed(failure: Failure) -> None:
    """A failure dealt with elsewhere."""
