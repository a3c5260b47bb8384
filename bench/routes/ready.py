"""An idle SSE stream as every seed handler opens one: one event, then quiet."""


def GET(data, ctx):
    ctx.response.sse().send("ready", event="ready")
