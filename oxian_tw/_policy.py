# -*- test-case-name: tests.test_policy -*-
"""
The channel policy (SPEC §16): who may subscribe to, publish on and read
the presence of which channels.

A route folder's ``channels.py`` defines ``authorize(ctx, channel,
action)`` (plain or async; ``action`` one of `ACTIONS`), returning true to
allow; every folder's from the root to the route's must allow. A request
below at least one such file gets a `RequestPolicy`: ``ctx.hub`` is then a
`CheckedHub`, ``ctx.runs`` `CheckedRuns`, and ``sse(channels=...)``,
``subscribe()`` and ``sse(run=...)`` ask it first. ``app.hub`` and
``app.runs`` stay trusted (timers and services use them). Without any
``channels.py`` nothing is checked (everything allowed).

Decisions are kept per (subject or client address, the route's policy
files, channel, action) for ``--channel-policy-ttl`` seconds in one
bounded table per app (`Decisions`). An ``authorize`` that raises denies
(fail closed) and is logged.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from ._coroutines import drive
from ._errors import HttpError
from ._invoke import call_async
from ._ratelimit import too_many
from .hub import IHub
from .tokens import matches

if TYPE_CHECKING:
    from ._pipeline import Step
    from ._runs import RunHandle, Runs

#: What a request may do with a channel.
ACTIONS = ("subscribe", "publish", "presence")

#: The error code of a refusal (SPEC §16).
FORBIDDEN_CODE = "forbidden_channel"

#: Decisions an app keeps at most (the least recently used go first).
DECISIONS_KEPT = 100_000

_log = Logger()


def forbidden(channel: str, action: str) -> HttpError:
    """The ``403`` of a denied channel."""
    return HttpError(
        403,
        f"Not allowed to {action} on channel {channel!r}",
        code=FORBIDDEN_CODE,
        details={"channel": channel, "action": action},
    )


class Decisions:
    """
    An app's kept decisions: key -> (allowed, until when), at most
    ``kept`` of them.
    """

    def __init__(self, ttl: float, kept: int = DECISIONS_KEPT) -> None:
        self.ttl = ttl
        self._kept = kept
        self._table: collections.OrderedDict[tuple[Any, ...], tuple[bool, float]] = (
            collections.OrderedDict()
        )

    def get(self, key: tuple[Any, ...], now: float) -> bool | None:
        """The decision kept for ``key`` and still valid, else ``None``."""
        found = self._table.get(key)
        if found is None:
            return None
        if found[1] <= now:
            del self._table[key]
            return None
        self._table.move_to_end(key)
        return found[0]

    def put(self, key: tuple[Any, ...], allowed: bool, now: float) -> None:
        """Keep ``allowed`` for ``key`` for the ttl."""
        if self.ttl <= 0:
            return
        self._table[key] = (allowed, now + self.ttl)
        self._table.move_to_end(key)
        while len(self._table) > self._kept:
            self._table.popitem(last=False)

    def __len__(self) -> int:
        return len(self._table)


def who(ctx: Any) -> str:
    """
    Whom a request acts for: its subject (``ctx.user``'s ``sub``) when
    known, else its client's address.
    """
    user = getattr(ctx, "user", None)
    subject = user.get("sub") if isinstance(user, dict) else None
    if subject is None:
        subject = getattr(user, "sub", None)
    if subject is not None:
        return f"sub:{subject}"
    return f"addr:{ctx.app.trusted_proxies.client_of(ctx.request.raw)}"


class RequestPolicy:
    """
    The channel policy as one request sees it.

    :param authorizers: the route's ``authorize`` steps, root to leaf.
    :param ctx: the request's ``ctx`` (given to ``authorize``).
    :param decisions: the app's `Decisions`.
    :param clock: returns the time.
    """

    def __init__(
        self,
        authorizers: tuple[Step, ...],
        ctx: Any,
        decisions: Decisions,
        clock: Callable[[], float],
    ) -> None:
        self._authorizers = authorizers
        self._ctx = ctx
        self._decisions = decisions
        self._clock = clock
        self._files = tuple(step.file for step in authorizers)

    def _who(self) -> str:
        return who(self._ctx)

    def token_claims(self) -> dict[str, Any] | None:
        """The claims of the request's stream token (`oxian_tw.tokens`), if any."""
        user = getattr(self._ctx, "user", None)
        if isinstance(user, dict) and isinstance(user.get("channels"), list):
            return user
        return None

    def allowed(self, channel: str, action: str) -> Deferred[bool]:
        """
        Whether ``action`` on ``channel`` is allowed: within the request's
        token's patterns (when it has one), and by every ``authorize``
        (kept, or asked).
        """
        claims = self.token_claims()
        if claims is not None and not matches(claims["channels"], channel):
            return succeed(False)
        if not self._authorizers:
            return succeed(True)
        key = (self._who(), self._files, channel, action)
        kept = self._decisions.get(key, self._clock())
        if kept is not None:
            return succeed(kept)
        asked = drive(self._ask(channel, action))

        def keep(allowed: bool) -> bool:
            self._decisions.put(key, allowed, self._clock())
            return allowed

        return asked.addCallback(keep)

    async def _ask(self, channel: str, action: str) -> bool:
        for step in self._authorizers:
            try:
                answer = await call_async(step.fn, self._ctx, channel, action)
            except Exception:
                _log.failure(
                    "authorize() in {file} failed for {action} on {channel}; denied",
                    file=step.file,
                    action=action,
                    channel=channel,
                )
                return False
            if not answer:
                return False
        return True

    def check(self, channels: Iterable[str], action: str) -> Deferred[None]:
        """
        A Deferred that fires once every channel is allowed, or fails with
        the `forbidden` error of the first denied (logged with the request
        id).
        """
        return drive(self._check(tuple(channels), action))

    async def _check(self, channels: tuple[str, ...], action: str) -> None:
        for channel in channels:
            if not await self.allowed(channel, action):
                _log.info(
                    "{action} on channel {channel!r} denied by the channel "
                    "policy (request {request_id})",
                    action=action,
                    channel=channel,
                    request_id=self._ctx.request_id,
                )
                raise forbidden(channel, action)

    @property
    def has_authorizers(self) -> bool:
        """Whether a ``channels.py`` applies (not only a token's patterns)."""
        return bool(self._authorizers)

    def subscribe_to(
        self,
        subscribe: Callable[..., Deferred[None]],
        allowed: Callable[[str], None] | None = None,
    ) -> Callable[..., Deferred[None]]:
        """
        ``subscribe`` (a hub's), asking first for its channels; ``allowed``
        is told each channel allowed.
        """

        def checked(
            stream: Any, channels: Any, *args: Any, **kwargs: Any
        ) -> Deferred[None]:
            channels = tuple(channels)
            asked = self.check(channels, "subscribe")

            def go(_: Any) -> Deferred[None]:
                if allowed is not None:
                    for channel in channels:
                        allowed(channel)
                subscribed: Deferred[None] = subscribe(
                    stream, channels, *args, **kwargs
                )
                return subscribed

            return asked.addCallback(go)

        return checked


@implementer(IHub)
class CheckedHub:
    """
    ``ctx.hub`` under a channel policy or ``--rate-publishes``: the app's
    hub, each publish and presence call asked first (a denied one fails
    with ``403``), each publish counted (past the limit ``429``).

    :param publishes: ``--rate-publishes``: takes a token for whom the
        request acts for (`who`), giving the seconds to wait without one.
    """

    def __init__(
        self,
        hub: IHub,
        policy: RequestPolicy | None,
        ctx: Any,
        publishes: Callable[[str], float] | None = None,
    ) -> None:
        self._hub = hub
        self._policy = policy
        self._ctx = ctx
        self._publishes = publishes
        self.backend = hub.backend

    def _asked(self, channels: tuple[str, ...], action: str) -> Deferred[None]:
        if self._policy is None:
            return succeed(None)
        return self._policy.check(channels, action)

    def publish(
        self,
        channel: str,
        data: Any,
        event: str | None = None,
        idempotency_key: str | None = None,
    ) -> Deferred[str]:
        limit = self._publishes
        if limit is not None:
            wait = limit(who(self._ctx))
            if wait:
                return fail(too_many("publishes", wait))
        asked = self._asked((channel,), "publish")
        return asked.addCallback(
            lambda _: self._hub.publish(channel, data, event, idempotency_key)
        )

    def subscribe(
        self, stream: Any, channels: Iterable[str], *args: Any, **kwargs: Any
    ) -> Deferred[None]:
        if self._policy is None:
            subscribed: Deferred[None] = self._hub.subscribe(
                stream, channels, *args, **kwargs
            )
            return subscribed
        return self._policy.subscribe_to(self._hub.subscribe)(
            stream, channels, *args, **kwargs
        )

    def unsubscribe(self, stream: Any, channels: Iterable[str]) -> bool:
        return bool(self._hub.unsubscribe(stream, channels))

    def presence(self, channel: str) -> Deferred[dict[str, Any]]:
        asked = self._asked((channel,), "presence")
        return asked.addCallback(lambda _: self._hub.presence(channel))

    def presence_count(self, channel: str) -> Deferred[int]:
        asked = self._asked((channel,), "presence")
        return asked.addCallback(lambda _: self._hub.presence_count(channel))

    def stats(self) -> Any:
        return self._hub.stats()

    def start(self) -> None:
        self._hub.start()

    def stop(self) -> Any:
        return self._hub.stop()


class CheckedRuns:
    """
    ``ctx.runs`` under a channel policy: starting and stopping a run are
    ``"publish"`` on its channel (``run:<key>``), its status
    ``"subscribe"``.
    """

    def __init__(self, runs: Runs, policy: RequestPolicy) -> None:
        self._runs = runs
        self._policy = policy

    def _asked(self, key: str, action: str) -> Deferred[None]:
        try:
            channel = self._runs.channel(key)
        except HttpError:
            return fail()
        return self._policy.check((channel,), action)

    def channel(self, key: str) -> str:
        return self._runs.channel(key)

    def start(
        self, key: str, source: Any, *, snapshot: Any = None
    ) -> Deferred[RunHandle]:
        asked = self._asked(key, "publish")
        return asked.addCallback(
            lambda _: self._runs.start(key, source, snapshot=snapshot)
        )

    def stop(self, key: str) -> Deferred[RunHandle | None]:
        asked = self._asked(key, "publish")
        return asked.addCallback(lambda _: self._runs.stop(key))

    def status(self, key: str) -> Deferred[RunHandle | None]:
        asked = self._asked(key, "subscribe")
        return asked.addCallback(lambda _: self._runs.status(key))
