"""Post a chat message to everyone in a room."""

import time
import uuid

from oxian_tw import HttpError

from .._params import text
from .events import broadcast_to_room


def POST(data, ctx):
    room = text(data, "room", "general", max_length=64)
    message, username = text(data, "message"), text(data, "username", max_length=64)
    if not message or not username:
        raise HttpError(400, "Message and username required")
    chat_message = {
        "id": uuid.uuid4().hex,
        "username": username,
        "message": message,
        "timestamp": int(time.time() * 1000),
    }
    broadcast_to_room(room, chat_message)
    return {"success": True, "messageId": chat_message["id"]}
