"""Post a chat message to everyone in a room."""

import time
import uuid

from oxian_tw import HttpError

from .events import broadcast_to_room


def POST(data, ctx):
    room = data.get("room", "general")
    message, username = data.get("message"), data.get("username")
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
