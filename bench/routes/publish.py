"""The SSE benchmark's publish route: the seed's ``broadcastToRoom`` loop."""

import time

from .events import CLIENTS


def POST(data, ctx):
    message = {"seq": int(data["seq"]), "t": time.time(), "pad": data["pad"]}
    for client in CLIENTS:
        client.sse.send(message, event="message")
    return {"sent": len(CLIENTS)}
