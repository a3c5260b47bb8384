"""
Post a message to a room: published once, encoded once, kept for replay.
In a private room only with its token (its members), under the token's
user's name, never the one in the body.
"""

import time

from oxian_tw import HttpError

from ..._params import text
from .._room import channel_for, display_name


async def POST(data, ctx):
    channel = channel_for(data)
    # Five messages a second per sender, a burst of five: 429 past it.
    ctx.dependencies.send_limit.check(ctx)
    message = text(data, "message")
    username = (
        display_name(ctx, {})
        if getattr(ctx, "user", None) is not None
        else text(data, "username", max_length=64)
    )
    if not message or not username:
        raise HttpError(400, "Message and username required")
    event_id = await ctx.hub.publish(
        channel,
        {
            "username": username,
            "message": message,
            "timestamp": int(time.time() * 1000),
        },
        event="message",
    )
    return {"success": True, "messageId": event_id}
