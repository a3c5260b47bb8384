"""Live chat: each client's stream, in a module-level set by room."""

import time
import uuid

from twisted.logger import Logger

from .._params import text

log = Logger()
clients = set()


class Client:
    def __init__(self, sse, room):
        self.sse = sse
        self.room = room
        self.id = uuid.uuid4().hex


def GET(data, ctx):
    room = text(data, "room", "general", max_length=64)
    sse = ctx.response.sse(retry=3000)
    client = Client(sse, room)
    clients.add(client)

    sse.send(
        {
            "message": "Connected to chat",
            "room": room,
            "timestamp": int(time.time() * 1000),
        },
        event="welcome",
    )

    def left(_):
        clients.discard(client)
        log.info("Client {id} disconnected from {room}", id=client.id, room=room)

    sse.done.addCallback(left)


def broadcast_to_room(room, message):
    """Send ``message`` to everyone in ``room``; slow clients never hold it up."""
    for client in clients:
        if client.room == room:
            # The id lets a reconnecting browser say what it saw last.
            client.sse.send(message, event="message", id=message["id"])
