"""The SSE benchmark's subscribe route on the hub: one channel."""


def GET(data, ctx):
    ctx.response.sse(channels=["bench"])
