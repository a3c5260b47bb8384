# -*- test-case-name: tests.test_sse,tests.test_hub_core -*-
"""
Opening an SSE response (``ctx.response.sse()``, SPEC §5): its checks, its
head, its `oxian_tw._eventstream.EventStream`, and, with channels, the head
held until they are live.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._context import header_text
from ._coroutines import drive
from ._errors import HttpError, error_body, error_response, http_status_of
from ._eventstream import (
    DEFAULT_POLICY,
    SLOW_CONSUMER_POLICIES,
    EventStream,
    RunStream,
    Subscribe,
    Subscribes,
)
from ._fastpath import limit_unacknowledged
from ._json import JSON_CONTENT_TYPE, dump_json
from ._producer import NO_BUFFERING, compression_memory
from ._runs import RUNNING
from .hub._channels import channel_names, check_history, presence_json
from .sse import encode_retry

if TYPE_CHECKING:
    from ._exchange import Exchange
    from ._policy import RequestPolicy
    from ._producer import Stream
    from .hub import IHub

_log = Logger()

#: ``sse(ping=...)`` left out: the app's ``--ping`` applies.
APP_PING: Any = object()

#: Seconds at most an SSE response's head waits for its channels to be
#: live (one round trip to Redis; longer only while it is unreachable).
HEAD_HOLD = 5.0

_SSE_DEFAULTS = (
    (b"Content-Type", b"text/event-stream; charset=utf-8"),
    *NO_BUFFERING,
)


def open_sse(
    exchange: Exchange,
    *,
    retry: int | None,
    keep_open: bool,
    headers: Mapping[str, Any] | None,
    status: int,
    ping: Any,
    slow_consumer: Any,
    channels: Iterable[str],
    history: int,
    presence: Any,
    presence_events: bool,
    run: str | None = None,
    compress: bool | None = None,
) -> EventStream:
    """``ctx.response.sse(...)`` (its parameters are documented there)."""
    if run is not None:
        if channels:
            raise ValueError("sse(run=...) takes no channels: the run is its channel")
        exchange.app.runs.channel(run)
    policy = exchange.policy
    # The hub itself, not its bound ``subscribe``: an idle stream keeps
    # what it subscribes through, and a bound method is 64 bytes each.
    hub: Subscribes = exchange.app.hub if run is None else exchange.app.runs.hub
    # The channels the policy allowed this stream (re-checked: revocation).
    allowed: list[str] = []
    if policy is not None:
        hub = _Through(policy.subscribe_to(hub.subscribe, allowed.append))
    if slow_consumer is not DEFAULT_POLICY and (
        slow_consumer not in SLOW_CONSUMER_POLICIES
    ):
        raise ValueError(
            f"slow_consumer must be one of {SLOW_CONSUMER_POLICIES}, "
            f"not {slow_consumer!r}"
        )
    app = exchange.app
    settings = app.settings
    if ping is APP_PING:
        ping = settings.ping or None
    elif ping is not None and (
        isinstance(ping, bool) or not isinstance(ping, int | float) or ping <= 0
    ):
        raise ValueError(f"ping must be a number of seconds > 0 or None: {ping!r}")
    opening = b"" if retry is None else encode_retry(retry)
    channels = channel_names(channels)
    check_history(history)
    if presence is not None:
        presence_json(presence)
    exchange.check_open()
    app.streams.admit()
    exchange.set_status(status)
    request = exchange.request
    response_headers = request.responseHeaders
    response_headers.removeHeader(b"content-length")
    for name, value in _SSE_DEFAULTS:
        response_headers.setRawHeaders(name, [value])
    if headers:
        exchange.set_headers(headers)
    limit_unacknowledged(
        getattr(request.channel, "transport", None), settings.write_timeout
    )
    # An event stream bounds what it holds itself (its budget). With
    # channels its head waits until they are live here: a client that
    # sees the response head gets every event published after that.
    stream = exchange.start_stream(
        keep_open,
        buffer_limit=None,
        hold_head=bool(channels) or run is not None,
        compress=compress,
    )
    last_event_id = header_text(request, b"last-event-id")
    if last_event_id is None:
        last_event_id = _query_value(request, b"lastEventId")
    sse = exchange.sse = (EventStream if run is None else RunStream)(
        stream,
        clock=app.clock,
        subscribe_to=hub,
        route=exchange.route or request.path.decode("latin-1"),
        request_id=exchange.request_id,
        # A compressor's memory is part of the budget (SPEC §17).
        budget=max(settings.sse_budget - compression_memory(stream), 0),
        slow_consumer=slow_consumer,
        ping=ping,
        last_event_id=last_event_id,
    )
    app.streams.add(sse)
    claims = policy.token_claims() if policy is not None else None
    if claims is not None:
        _expire_with_token(sse, app.clock, float(claims["exp"]))
    if (
        policy is not None
        and policy.has_authorizers
        and settings.channel_policy_ttl > 0
    ):
        hub = app.hub if run is None else app.runs.hub
        _recheck_every(
            sse, policy, app.clock, settings.channel_policy_ttl, allowed, hub
        )
    if opening:
        stream._push(opening)
    if channels:
        joined = sse.subscribe(
            *channels,
            history=history,
            presence=presence,
            presence_events=presence_events,
        )
        joined.addErrback(_refused, exchange, stream)
        release_when(exchange, stream, joined)
    if run is not None:
        drive(_attach(exchange, sse, stream, run)).addErrback(
            _not_attached, exchange, stream
        )
    return sse


async def _attach(
    exchange: Exchange, sse: EventStream, stream: Stream, key: str
) -> None:
    """
    Attach ``sse`` to the run ``key`` (SPEC §15), its head held until
    decided: 404 for no such run; 204 for a reconnect with the id of its
    ``end`` (EventSource stops); else its events from the client's
    ``Last-Event-ID``, or from its first (its snapshot, once ended).
    """
    runs = exchange.app.runs
    handle = await runs.status(key)
    if stream.closed:
        return
    if handle is None:
        _answer(exchange, stream, 404, error_body(404, "No such run"))
        return
    last = sse.last_event_id
    if last is not None and last == handle.end_id:
        _answer(exchange, stream, 204, None)
        return
    if last is None:
        if handle.end_id is not None and handle.snapshot_id is not None:
            epoch, _, n = handle.snapshot_id.rpartition("-")
            sse.last_event_id = f"{epoch}-{int(n) - 1}"
        else:
            sse.last_event_id = "earliest"
    if handle.status == RUNNING:
        sse._on_end(_unwatching(runs.watch(key)))
    joined = sse.subscribe(runs.channel(key))
    joined.addErrback(_refused, exchange, stream)
    release_when(exchange, stream, joined)


def _refused(failure: Failure, exchange: Exchange, stream: Stream) -> None:
    """
    A channel of the held head was denied (the channel policy): the whole
    request is refused, before any header.
    """
    failure.trap(HttpError)
    error = failure.value
    assert isinstance(error, HttpError)
    if stream._head_held and not stream.closed:
        status, headers, body = error_response(error)
        exchange.set_headers(headers)
        _answer(exchange, stream, status, body)


class _Through:
    """Subscribes through ``subscribe`` (a policy's check of the hub's)."""

    __slots__ = ("subscribe",)

    def __init__(self, subscribe: Subscribe) -> None:
        self.subscribe = subscribe


def _expire_with_token(sse: EventStream, clock: Any, expiry: float) -> None:
    """
    At the stream token's expiry: ``event: expired`` (``{"reason":
    "token"}``), then the end; the client reconnects with a fresh token
    and its ``Last-Event-ID``.
    """

    def expire() -> None:
        if not sse.closed:
            sse.send({"reason": "token"}, event="expired")
            sse.close()

    call = clock.callLater(max(0.0, expiry - clock.seconds()), expire)
    sse._on_end(lambda _: call.cancel() if call.active() else None)


def _recheck_every(
    sse: EventStream,
    policy: RequestPolicy,
    clock: Any,
    ttl: float,
    allowed: list[str],
    hub: IHub,
) -> None:
    """
    When the stream's decisions expire (every ``ttl``), ask again: a
    channel now denied gets ``event: revoked`` (``{"channel": ...}``) and
    is left (the stream keeps its other channels); a stream still joining
    its channels ends instead (the client reconnects, and is refused).
    """
    state: dict[str, Any] = {}

    def recheck() -> None:
        if sse.closed:
            return
        drive(_revoked(policy, tuple(allowed))).addCallback(decided)

    def decided(denied: str | None) -> None:
        if sse.closed:
            return
        if denied is None:
            state["call"] = clock.callLater(ttl, recheck)
            return
        sse.send({"channel": denied}, event="revoked")
        while denied in allowed:
            allowed.remove(denied)
        if hub.unsubscribe(sse, [denied]):
            # The others are asked again now (each decision was asked at
            # the same time), then every ttl.
            recheck()
        else:
            sse.close()

    state["call"] = clock.callLater(ttl, recheck)

    def stop(_: Any) -> None:
        call = state.get("call")
        if call is not None and call.active():
            call.cancel()

    sse._on_end(stop)


async def _revoked(policy: RequestPolicy, channels: tuple[str, ...]) -> str | None:
    """The first of ``channels`` no longer allowed, else ``None``."""
    for channel in channels:
        if not await policy.allowed(channel, "subscribe"):
            return channel
    return None


def _unwatching(unwatch: Callable[[], None]) -> Callable[[Any], None]:
    return lambda _: unwatch()


def _answer(exchange: Exchange, stream: Stream, status: int, body: Any) -> None:
    """Answer a held SSE head with ``status`` (and a JSON ``body``) instead."""
    request = exchange.request
    request.setResponseCode(status)
    # (The opening retry: field, say, was for the event stream.)
    stream._discard()
    headers = request.responseHeaders
    if body is None:
        headers.removeHeader(b"content-type")
    else:
        headers.setRawHeaders(b"Content-Type", [JSON_CONTENT_TYPE.encode()])
        stream._push(dump_json(body))
    stream.close()


def _not_attached(failure: Failure, exchange: Exchange, stream: Stream) -> None:
    """The run's state could not be read (the hub unreachable): 503."""
    if not stream.closed:
        error = failure.value
        status = (http_status_of(error) if error is not None else None) or 503
        _log.warn(
            "sse(run=...) failed: {error} (request {request_id})",
            error=error,
            request_id=exchange.request_id,
        )
        _answer(exchange, stream, status, error_body(status, "The run is unavailable"))


def release_when(exchange: Exchange, stream: Stream, joined: Deferred[Any]) -> None:
    """
    Send the held head once ``joined`` fires, or after `HEAD_HOLD` seconds
    whatever happens (the hub unreachable: heartbeats go on).
    """
    if joined.called:
        stream._release_head()
        return
    cap = exchange.app.clock.callLater(HEAD_HOLD, stream._release_head)

    def release(_: Any) -> None:
        if cap.active():
            cap.cancel()
        stream._release_head()

    joined.addBoth(release)


def _query_value(request: Any, name: bytes) -> str | None:
    values = request.args.get(name) if request.args else None
    return values[0].decode("utf-8", "replace") if values else None
