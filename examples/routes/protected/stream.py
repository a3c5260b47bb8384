"""
Streaming with authentication: ``Authorization: Bearer <token>`` (the demo
token is ``demo-token``), checked before the stream opens; or, from a
browser's EventSource, ``?token=`` with a stream token from ``POST
/protected/token`` (checked by this folder's middleware).
"""

import time

from twisted.internet.task import LoopingCall

from oxian_tw import HttpError

from .._params import interval


def GET(data, ctx):
    auth = ctx.dependencies.auth
    claims = getattr(ctx, "user", None)
    if claims is not None:
        user = auth.user_by_id(claims["sub"])
        if user is None:
            raise HttpError(401, "Unknown user", headers={"WWW-Authenticate": "Bearer"})
        return _stream(data, ctx, user)
    header = ctx.request.headers.get("authorization") or ""
    token = header.removeprefix("Bearer ").strip()
    if not token:
        raise HttpError(
            401, "Authentication required", headers={"WWW-Authenticate": "Bearer"}
        )
    user = auth.verify_token(token)
    if user is None:
        raise HttpError(401, "Invalid token", headers={"WWW-Authenticate": "Bearer"})
    return _stream(data, ctx, user)


def _stream(data, ctx, user):
    every = interval(data, 10)
    sse = ctx.response.sse()
    sse.send(
        {"message": f"Welcome {user['name']}", "userId": user["id"]},
        event="authenticated",
    )

    def notify():
        sse.send(
            {"userId": user["id"], "timestamp": int(time.time() * 1000)},
            event="notification",
        )

    notifications = LoopingCall(notify)
    notifications.clock = ctx.clock
    notifications.start(every, now=False)
    sse.done.addCallback(lambda _: notifications.stop())
