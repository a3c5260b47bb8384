# -*- test-case-name: tests.test_runs,tests.test_e2e_runs -*-
"""
Runs (SPEC §15): generations that outlive their request.

A run is keyed by the app (a chat turn's id, say). `Runs.start` claims the
key across processes (a record beside the run's hub channel,
`oxian_tw.hub.IBackend.claim`) and, when it won, drives the source's async
iterator in this process, publishing each item on the channel
``run:<key>``; any process serves attached clients from that channel
(`attach`, behind ``ctx.response.sse(run=key)``). The run's state record
says how it ended; its lease record, renewed every third of
``--runs-lease`` by the producing process, says it still has a producer.

Every end goes through `Runs._finish`: the state moves from running to its
end (compare-and-set: the first end wins, once), then the snapshot (if
made here) and the ``end`` event are published, then the end's id is
written into the state, so a reconnect with that id gets 204.

- done / failed / stopped here: the producer ends it;
- stopped elsewhere: the stopping process ends it; the producer sees the
  state change within `CHECK_EVERY` and cancels its generator;
- interrupted: any process that finds the run running without a lease
  ends it (the processes serving its attached clients look every
  `CHECK_EVERY`; a `start` or `stop` of its key looks too).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._config import RUNS_LEASE, RUNS_RETENTION
from ._coroutines import CANCELLED, drive
from ._errors import HttpError
from .hub._channels import check_channel
from .sse import Event

if TYPE_CHECKING:
    from .hub import Hub

#: The hub channel of the run keyed ``key`` is ``PREFIX + key``.
PREFIX = "run:"
#: Event names a run's own events may not take: the run's.
END_EVENT, SNAPSHOT_EVENT = "end", "snapshot"

#: How a run ends (``{"status": ...}`` of its ``end`` event).
RUNNING, DONE, STOPPED, FAILED, INTERRUPTED = (
    "running",
    "done",
    "stopped",
    "failed",
    "interrupted",
)

#: Seconds between a process's looks at a run it produces (stopped
#: elsewhere?) or serves (its producer's lease lapsed?).
CHECK_EVERY = 0.25

#: Events a run's channel keeps at most (its bytes bound it first).
RUN_HISTORY_EVENTS = 1_000_000

_RUNNING_STATE = json.dumps({"status": RUNNING})


@attrs.frozen
class RunHandle:
    """What `Runs.start` gives: the run's key and its status then."""

    key: str
    status: str
    #: The ``end`` event's id, once it ended (a reconnect with it: 204).
    end_id: str | None = None
    #: The ``snapshot`` event's id, when one was made.
    snapshot_id: str | None = None


def _handle(key: str, state: str) -> RunHandle:
    fields = json.loads(state)
    return RunHandle(key, fields["status"], fields.get("end"), fields.get("snapshot"))


def _handle_or_none(state: str | None, key: str) -> RunHandle | None:
    return None if state is None else _handle(key, state)


@attrs.define
class _Producing:
    """A run this process drives."""

    key: str
    generation: Deferred[None] | None = None
    #: Fired (each) once its end is recorded.
    waiting: list[Deferred[None]] = attrs.Factory(list)
    #: The status its generator's cancellation means.
    cancelled_as: str = STOPPED
    #: Stopped before its generation began: it never begins.
    skipped: bool = False
    ticks: int = 0

    def ended(self) -> Deferred[None]:
        """A Deferred that fires once the run's end is recorded."""
        d: Deferred[None] = Deferred()
        self.waiting.append(d)
        return d


class Runs:
    """
    ``ctx.runs`` and ``app.runs``: start, stop and look up runs.

    :param hub: the hub the runs' channels live in (its own, with runs'
        history bounds).
    :param clock: returns the ``IReactorTime``.
    :param lease: ``--runs-lease`` seconds.
    :param retention: ``--runs-retention`` seconds.
    """

    _log = Logger()

    def __init__(
        self,
        hub: Hub,
        clock: Callable[[], IReactorTime],
        *,
        lease: float = RUNS_LEASE,
        retention: float = RUNS_RETENTION,
    ) -> None:
        self.hub = hub
        self._records = hub.backend
        self._clock = clock
        self.lease = lease
        self.retention = retention
        #: This process, as the owner of the leases it holds.
        self._owner = uuid.uuid4().hex
        self._producing: dict[str, _Producing] = {}
        #: Runs whose attached clients this process serves: key -> count.
        self._watched: dict[str, int] = {}
        self._timer: IDelayedCall | None = None

    @staticmethod
    def channel(key: str) -> str:
        """
        The hub channel of the run ``key``.

        :raises HttpError: ``400`` for a key that names no channel (not a
            ``str``, too long, CR, LF or NUL): keys often come from URLs.
        """
        channel = PREFIX + key if isinstance(key, str) else key
        try:
            check_channel(channel)
        except (TypeError, ValueError) as error:
            raise HttpError(400, f"Invalid run key: {error}") from None
        return channel

    def start(
        self,
        key: str,
        source: Callable[[], Any],
        *,
        snapshot: Callable[[list[Any]], Any] | None = None,
    ) -> Deferred[RunHandle]:
        """
        Start the run ``key``: ``source()`` (an async iterable of events as
        SPEC §14 says) runs apart from the request, its items published on
        the run's channel. A key running, or ended and still retained,
        starts nothing: a Deferred of that run's handle.

        :param snapshot: ``snapshot(items)`` collapses what the run made
            into one ``event: snapshot`` (its data) when it ends here, so
            late readers get the answer in one piece.
        """
        try:
            channel = self.channel(key)
        except HttpError:
            return fail()
        return drive(self._start(key, channel, source, snapshot))

    async def _start(
        self,
        key: str,
        channel: str,
        source: Callable[[], Any],
        snapshot: Callable[[list[Any]], Any] | None,
    ) -> RunHandle:
        held = await self._records.claim(
            channel, "state", _RUNNING_STATE, self.retention + self.lease
        )
        if held is not None:
            handle = _handle(key, held)
            if handle.status == RUNNING and key not in self._producing:
                if await self._records.fetch(channel, "lease") is None:
                    await self._finish(key, INTERRUPTED)
                    return await self.status(key) or handle
            return handle
        await self._records.claim(channel, "lease", self._owner, self.lease)
        producing = self._producing[key] = _Producing(key)
        # Apart from the request: from the next turn, in a context of its own.
        self._clock().callLater(0, self._produce, producing, source, snapshot)
        self._tick_soon()
        return RunHandle(key, RUNNING)

    def _produce(
        self,
        producing: _Producing,
        source: Callable[[], Any],
        snapshot: Callable[[list[Any]], Any] | None,
    ) -> None:
        if producing.skipped:
            self._produced(None, producing)
            return
        made: list[Any] | None = [] if snapshot is not None else None
        generation = producing.generation = drive(
            self._generate(producing.key, source, made)
        )

        def ended(result: Any) -> Deferred[None]:
            producing.generation = None
            status = DONE
            if isinstance(result, Failure):
                if result.check(*CANCELLED):
                    status = producing.cancelled_as
                else:
                    status = FAILED
                    self._log.failure("Run {key} failed", result, key=producing.key)
            made_snapshot = None
            if snapshot is not None and made is not None:
                try:
                    made_snapshot = (snapshot(made),)
                except Exception:
                    self._log.failure("Run {key}: snapshot failed", key=producing.key)
            finished = self._finish(producing.key, status, made_snapshot)
            finished.addBoth(self._produced, producing)
            return finished

        generation.addBoth(ended)

    def _produced(self, result: Any, producing: _Producing) -> None:
        """The run's end is recorded (or failed to be)."""
        self._producing.pop(producing.key, None)
        waiting, producing.waiting = producing.waiting, []
        for d in waiting:
            d.callback(None)
        if isinstance(result, Failure):
            self._log.failure(
                "Run {key}: its end was not recorded", result, key=producing.key
            )

    async def _generate(
        self, key: str, source: Callable[[], Any], made: list[Any] | None
    ) -> None:
        channel = self.channel(key)
        iterator = source().__aiter__()
        try:
            async for item in iterator:
                if isinstance(item, Event):
                    data, event = item.data, item.event
                else:
                    data, event = item, None
                if event in (END_EVENT, SNAPSHOT_EVENT):
                    raise ValueError(f"a run's events may not be named {event!r}")
                await self.hub.publish(channel, data, event)
                if made is not None:
                    made.append(data)
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()

    def stop(self, key: str) -> Deferred[RunHandle | None]:
        """
        Stop the run ``key``, from any process: its generator is cancelled
        and its clients get ``end`` ``{"status": "stopped"}``. A Deferred of
        its handle afterwards (``None``: no such run).
        """
        try:
            self.channel(key)
        except HttpError:
            return fail()
        return drive(self._stop(key))

    async def _stop(self, key: str) -> RunHandle | None:
        producing = self._producing.get(key)
        if producing is not None and producing.generation is not None:
            ended = producing.ended()
            producing.generation.cancel()
            await ended
        else:
            if producing is not None:
                # Its source was not called yet: it never will be.
                producing.skipped = True
            handle = await self.status(key)
            if handle is None:
                return None
            if handle.status == RUNNING:
                status = STOPPED if producing is None else producing.cancelled_as
                await self._finish(key, status)
        return await self.status(key)

    def status(self, key: str) -> Deferred[RunHandle | None]:
        """A Deferred of the run's handle now (``None``: no such run)."""
        try:
            channel = self.channel(key)
        except HttpError:
            return fail()
        fetched: Deferred[str | None] = self._records.fetch(channel, "state")
        return fetched.addCallback(_handle_or_none, key)

    def _finish(
        self, key: str, status: str, snapshot: tuple[Any] | None = None
    ) -> Deferred[None]:
        return drive(self.__finish(key, status, snapshot))

    async def __finish(
        self, key: str, status: str, snapshot: tuple[Any] | None
    ) -> None:
        channel = self.channel(key)
        ending = json.dumps({"status": status})
        if not await self._records.swap(
            channel, "state", _RUNNING_STATE, ending, self.retention
        ):
            return  # Another end came first: it stands.
        fields: dict[str, Any] = {"status": status}
        if snapshot is not None:
            fields["snapshot"] = await self.hub.publish(
                channel, snapshot[0], SNAPSHOT_EVENT
            )
        fields["end"] = await self.hub.publish(
            channel, {"status": status}, END_EVENT, idempotency_key="end"
        )
        await self._records.swap(
            channel, "state", ending, json.dumps(fields), self.retention
        )
        self._log.info("Run {key} ended: {status}", key=key, status=status)

    # Serving attached clients: noticing a producer gone, or a stop.

    def watch(self, key: str) -> Callable[[], None]:
        """
        Look after the run ``key`` while a client here is attached to it:
        end it as interrupted if its producer's lease lapses. Returns what
        to call when that client leaves.
        """
        self._watched[key] = self._watched.get(key, 0) + 1
        self._tick_soon()

        def unwatch() -> None:
            count = self._watched.get(key, 0) - 1
            if count > 0:
                self._watched[key] = count
            else:
                self._watched.pop(key, None)

        return unwatch

    def _tick_soon(self) -> None:
        if self._timer is None:
            self._timer = self._clock().callLater(CHECK_EVERY, self._tick)

    def _tick(self) -> None:
        self._timer = None
        renew_every = max(1, int(self.lease / 3 / CHECK_EVERY))
        for producing in list(self._producing.values()):
            producing.ticks += 1
            drive(self._look_after(producing, producing.ticks % renew_every == 0))
        for key in list(self._watched):
            if key not in self._producing:
                drive(self._check_lease(key))
        if self._producing or self._watched:
            self._tick_soon()

    async def _look_after(self, producing: _Producing, renew: bool) -> None:
        channel = self.channel(producing.key)
        try:
            if renew:
                kept = await self._records.swap(
                    channel, "lease", self._owner, self._owner, self.lease
                )
                if kept:
                    await self._records.swap(
                        channel,
                        "state",
                        _RUNNING_STATE,
                        _RUNNING_STATE,
                        self.retention + self.lease,
                    )
            state = await self._records.fetch(channel, "state")
        except Exception:
            # The hub unreachable: the lease decides (renewed when it is back).
            return
        if state != _RUNNING_STATE and producing.generation is not None:
            # Ended elsewhere (a stop, or we were taken for dead).
            producing.generation.cancel()

    async def _check_lease(self, key: str) -> None:
        channel = self.channel(key)
        try:
            if await self._records.fetch(channel, "state") != _RUNNING_STATE:
                return
            if await self._records.fetch(channel, "lease") is None:
                await self._finish(key, INTERRUPTED)
        except Exception:
            return

    def stop_service(self) -> Deferred[None]:
        """
        The app is stopping: runs produced here end as interrupted (their
        clients told), the timer stops.
        """
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        for producing in self._producing.values():
            producing.cancelled_as = INTERRUPTED
        stopping = [self.stop(key) for key in list(self._producing)]
        if not stopping:
            return succeed(None)
        done: Deferred[Any] = DeferredList(stopping, consumeErrors=True)
        return done.addCallback(lambda _: None)
