"""Post a message to a room: published once, encoded once, kept for replay."""

import time

from oxian_tw import HttpError

from ..._params import text
from .._room import channel_for


async def POST(data, ctx):
    channel = channel_for(data)
    message, username = text(data, "message"), text(data, "username", max_length=64)
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
