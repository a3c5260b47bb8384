# -*- test-case-name: tests.test_pipeline -*-
"""
The per-folder pipeline (SPEC §7): ``dependencies.py``, ``middleware.py``
and ``interceptors.py`` in any folder of the route tree apply to every
route below it.

Pipeline files are found and imported once, at startup, so a broken one
fails startup rather than a request. Each ``dependencies()`` factory is a
singleton: evaluated lazily by the first request that needs it (concurrent
first requests share the one evaluation), kept until the app shuts down,
and tried again by the next request when it failed.

One request: every ``before_run`` root → leaf, every ``middleware`` root →
leaf, the handler, then every ``after_run`` leaf → root with whatever came
out of the steps before it (a result or an exception).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._context import RESERVED_CONTEXT_NAMES, Context, Dependencies
from ._coroutines import drive
from ._errors import HttpError, RouteTreeError
from ._invoke import call, call_async
from ._modules import RouteModules
from ._policy import who
from ._ratelimit import too_many
from ._routing import PIPELINE_FILES, Route, walk

if TYPE_CHECKING:
    from ._exchange import Exchange

_log = Logger()

# What each pipeline file must (or may) define.
_REQUIRED = {
    "dependencies": ("dependencies",),
    "middleware": ("middleware",),
    "interceptors": ("before_run", "after_run"),
    "channels": ("authorize",),
}
_SIGNATURES = {
    "dependencies": "dependencies(parent)",
    "middleware": "middleware(data, ctx)",
    "interceptors": "before_run(data, ctx) or after_run(result_or_error, ctx)",
    "channels": "authorize(ctx, channel, action)",
}


class DependencyError(HttpError):
    """
    A ``dependencies()`` factory failed: the routes below it answer ``500``
    (the cause is logged once, naming the file).
    """

    def __init__(self, file: str) -> None:
        super().__init__(500)
        self.file = file


@attrs.frozen
class Step:
    """One pipeline function, with the file that defines it (for errors)."""

    file: str
    name: str
    fn: Callable[..., Any]


class Singleton:
    """
    The merged dependencies of one folder with a ``dependencies.py``: its
    factory's result over those of the folders above.

    :param file: the file, relative to the route root.
    :param factory: its ``dependencies(parent)``.
    :param shutdown: its ``shutdown(deps)``, or ``None``.
    :param parent: the nearest folder above with dependencies, or ``None``.
    :param root: the app's dependencies, the parent of the topmost file.
    :param ready: called with this singleton once it holds a value.
    """

    def __init__(
        self,
        file: str,
        factory: Callable[..., Any],
        shutdown: Callable[..., Any] | None,
        parent: Singleton | None,
        root: Dependencies,
        ready: Callable[[Singleton], None],
    ) -> None:
        self.file = file
        self.shutdown = shutdown
        self._factory = factory
        self._parent = parent
        self._root = root
        self._ready = ready
        self.value: Dependencies | None = None
        self._waiting: list[Deferred[Dependencies]] | None = None

    def get(self) -> Dependencies | Deferred[Dependencies]:
        """The value, or a Deferred for it while the factory runs."""
        if self.value is not None:
            return self.value
        waiter: Deferred[Dependencies] = Deferred()
        if self._waiting is not None:
            self._waiting.append(waiter)
            return waiter
        self._waiting = [waiter]
        drive(self._evaluate()).addBoth(self._settle)
        return waiter

    async def _evaluate(self) -> Dependencies:
        parent = self._root if self._parent is None else self._parent.get()
        if isinstance(parent, Deferred):
            parent = await parent
        made = await call_async(self._factory, dict(parent))
        if not isinstance(made, Mapping):
            raise TypeError(
                f"dependencies() returned {type(made).__name__}, not a mapping"
            )
        return Dependencies({**parent, **made})

    def _settle(self, result: Dependencies | Failure) -> None:
        waiting, self._waiting = self._waiting or [], None
        if isinstance(result, Failure):
            if result.check(DependencyError):
                # A parent's failure, logged by the parent.
                error = result.value
            else:
                _log.failure(
                    "dependencies() in {file} failed; routes below it answer "
                    "500 and the next request tries again",
                    result,
                    file=self.file,
                )
                error = DependencyError(self.file)
            for waiter in waiting:
                waiter.errback(error)
            return
        self.value = result
        self._ready(self)
        for waiter in waiting:
            waiter.callback(result)


@attrs.frozen
class Chain:
    """
    The pipeline of one route.

    :ivar steps: every ``before_run`` root → leaf, then every ``middleware``
        root → leaf.
    :ivar after_run: every ``after_run``, leaf → root.
    :ivar dependencies: the nearest folder's dependencies, or ``None`` for
        the app's own.
    :ivar authorizers: every ``authorize`` (``channels.py``), root → leaf:
        the channel policy (`oxian_tw._policy`).
    """

    steps: tuple[Step, ...] = ()
    after_run: tuple[Step, ...] = ()
    dependencies: Singleton | None = None
    authorizers: tuple[Step, ...] = ()
    #: Nothing runs around the handler and the app's dependencies apply:
    #: `Pipeline.run` just calls it.
    empty: bool = attrs.field(init=False)

    @empty.default
    def _empty(self) -> bool:
        return not self.steps and not self.after_run and self.dependencies is None


class Pipeline:
    """
    The pipeline files of a route tree, and running a request through them.

    :param root: the route directory.
    :param modules: the tree's module loader.
    :param dependencies: the app's dependencies (the root's parent).
    :raises RouteTreeError: when a pipeline file fails to import or lacks
        its function.
    """

    def __init__(
        self, root: str, modules: RouteModules, dependencies: Dependencies
    ) -> None:
        self._dependencies = dependencies
        self._folders: dict[str, dict[str, Step]] = {}
        self._singletons: dict[str, Singleton] = {}
        self._evaluated: list[Singleton] = []
        for folder, files in walk(root):
            steps: dict[str, Step] = {}
            for kind in sorted(PIPELINE_FILES):
                if f"{kind}.py" in files:
                    file = f"{folder}/{kind}.py" if folder else f"{kind}.py"
                    steps.update(_exports(kind, file, modules))
            if steps:
                self._folders[folder] = steps
            if "dependencies" in steps:
                self._singletons[folder] = Singleton(
                    steps["dependencies"].file,
                    steps["dependencies"].fn,
                    steps["shutdown"].fn if "shutdown" in steps else None,
                    self._nearest_singleton(folder),
                    dependencies,
                    self._evaluated.append,
                )

    def _nearest_singleton(self, folder: str) -> Singleton | None:
        found = None
        for above in _folders_down_to(folder):
            found = self._singletons.get(above, found)
        return found

    def chain(self, route: Route) -> Chain:
        """The pipeline of ``route``: the folders from the root to its file's."""
        folder = route.file.rpartition("/")[0]
        levels = [self._folders.get(f, {}) for f in _folders_down_to(folder)]
        before = tuple(lv["before_run"] for lv in levels if "before_run" in lv)
        middleware = tuple(lv["middleware"] for lv in levels if "middleware" in lv)
        after = tuple(lv["after_run"] for lv in reversed(levels) if "after_run" in lv)
        return Chain(
            steps=before + middleware,
            after_run=after,
            dependencies=self._nearest_singleton(folder),
            authorizers=tuple(lv["authorize"] for lv in levels if "authorize" in lv),
        )

    def run(
        self,
        chain: Chain,
        handler: Callable[..., Any],
        data: dict[str, Any],
        ctx: Context,
        exchange: Exchange,
    ) -> Any:
        """
        Run ``handler`` for one request through ``chain``: its result, or a
        Deferred of it when something was asynchronous. ``exchange`` owns
        the request (a step may answer it: then no handler runs).
        """
        if chain.empty:
            # ``ctx`` was made with the app's dependencies.
            return call(handler, data, ctx)
        dependencies: Dependencies | Deferred[Dependencies] = (
            self._dependencies
            if chain.dependencies is None
            else chain.dependencies.get()
        )
        # `Singleton.get` gives its value or a Deferred of exactly that type.
        if type(dependencies) is Deferred or chain.steps or chain.after_run:
            return drive(_run(chain, handler, data, ctx, exchange, dependencies))
        ctx.dependencies = dependencies  # type: ignore[assignment]
        return call(handler, data, ctx)

    def shutdown(self, timeout: float, clock: IReactorTime) -> Deferred[None]:
        """
        Run each evaluated folder's ``shutdown(deps)``, the most recently
        evaluated first, each for at most ``timeout`` seconds, and forget
        the values (a later request evaluates the factories again).
        Failures are logged; the others still run.
        """
        return drive(self._shutdown(timeout, clock))

    async def _shutdown(self, timeout: float, clock: IReactorTime) -> None:
        evaluated, self._evaluated[:] = list(self._evaluated), []
        for singleton in reversed(evaluated):
            value, singleton.value = singleton.value, None
            if singleton.shutdown is None:
                continue
            try:
                await drive(call_async(singleton.shutdown, value)).addTimeout(
                    timeout, clock
                )
            except TimeoutError:
                _log.warn(
                    "shutdown() in {file} took over {timeout} s; cancelled",
                    file=singleton.file,
                    timeout=timeout,
                )
            except Exception:
                _log.failure("shutdown() in {file} failed", file=singleton.file)


async def _run(
    chain: Chain,
    handler: Callable[..., Any],
    data: dict[str, Any],
    ctx: Context,
    exchange: Exchange,
    dependencies: Dependencies | Deferred[Dependencies],
) -> Any:
    if isinstance(dependencies, Deferred):
        dependencies = await dependencies
    ctx.dependencies = dependencies
    failed = False
    try:
        result = await _steps(chain, handler, data, ctx, exchange)
    except Exception as exc:
        result, failed = exc, True
    for step in chain.after_run:
        try:
            replaced = await call_async(step.fn, result, ctx)
        except Exception as exc:
            result, failed = exc, True
        else:
            if replaced is not None:
                result, failed = replaced, False
    if failed:
        raise result
    return result


async def _steps(
    chain: Chain,
    handler: Callable[..., Any],
    data: dict[str, Any],
    ctx: Context,
    exchange: Exchange,
) -> Any:
    for step in chain.steps:
        _merge(step, await call_async(step.fn, data, ctx), data, ctx)
        if exchange.settled:
            # Answered (``ctx.response.send()``) or gone: no handler.
            return None
    requests = ctx.app.rate_limits.requests
    if requests is not None and chain.steps:
        # --rate-requests per subject when middleware set ctx.user (a
        # stream token), else per address (as the dispatcher does).
        wait = requests.take(who(ctx))
        if wait:
            raise too_many("requests", wait)
    return await call_async(handler, data, ctx)


def _merge(step: Step, returned: Any, data: dict[str, Any], ctx: Context) -> None:
    """Apply a ``before_run``'s or ``middleware``'s ``{"data", "context"}``."""
    if returned is None:
        return
    where = f"{step.name}() in {step.file}"
    if not isinstance(returned, Mapping) or not set(returned) <= {"data", "context"}:
        raise TypeError(
            f"{where} returned {_describe(returned)}; "
            "expected None or a dict with 'data' and/or 'context'"
        )
    more, extra = returned.get("data"), returned.get("context")
    for key, value in (("data", more), ("context", extra)):
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(
                f"{where}: {key!r} must be a dict, not {type(value).__name__}"
            )
    data.update(more or {})
    for name, value in (extra or {}).items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"{where}: context key {name!r} is not an identifier")
        if name in RESERVED_CONTEXT_NAMES:
            raise ValueError(f"{where}: context key {name!r} would replace ctx.{name}")
        setattr(ctx, name, value)


def _describe(value: Any) -> str:
    kind = type(value).__name__
    if isinstance(value, Mapping):
        return f"a {kind} with keys {sorted(map(str, value))}"
    return kind


def _folders_down_to(folder: str) -> Iterator[str]:
    """``""``, ``"a"``, ``"a/b"`` for ``"a/b"``: the root first."""
    yield ""
    parts = folder.split("/") if folder else []
    for index in range(1, len(parts) + 1):
        yield "/".join(parts[:index])


def _exports(kind: str, file: str, modules: RouteModules) -> dict[str, Step]:
    module = modules.load(file)
    names = (
        (*_REQUIRED[kind], "shutdown") if kind == "dependencies" else _REQUIRED[kind]
    )
    found = {
        name: Step(file, name, fn)
        for name in names
        if callable(fn := getattr(module, name, None))
    }
    if not any(name in found for name in _REQUIRED[kind]):
        raise RouteTreeError(f"{file}: defines no {_SIGNATURES[kind]} function")
    return found
