"""The SSE benchmark's publish route on the hub: encoded once, fanned out."""

import time


def POST(data, ctx):
    message = {"seq": int(data["seq"]), "t": time.time(), "pad": data["pad"]}
    ctx.hub.publish("bench", message, event="message")
    return {"sent": ctx.app.hub.stats().subscribers}
