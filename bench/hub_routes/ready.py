"""An idle hub stream as the seed opens one: subscribed, one event at open."""


def GET(data, ctx):
    ctx.response.sse(channels=["idle"]).send("ready", event="ready")
