"""
The SSE benchmark's publish route: the seed's ``broadcastToRoom`` loop,
``count`` messages back to back (one reactor turn).
"""

import time

from .events import CLIENTS


def POST(data, ctx):
    first = int(data["seq"])
    for seq in range(first, first + int(data.get("count", 1))):
        message = {"seq": seq, "t": time.time(), "pad": data["pad"]}
        for client in CLIENTS:
            client.sse.send(message, event="message")
    return {"sent": len(CLIENTS)}
