"""
The SSE benchmark's publish route on the hub: each event encoded once and
fanned out; ``count`` events back to back (one reactor turn).
"""

import time


def POST(data, ctx):
    first = int(data["seq"])
    channel = data.get("channel", "bench")
    for seq in range(first, first + int(data.get("count", 1))):
        message = {"seq": seq, "t": time.time(), "pad": data["pad"]}
        ctx.hub.publish(channel, message, event="message")
    return {"sent": ctx.app.hub.stats().subscribers}
