"""The SSE benchmark's subscribe route on the hub: one channel (``bench``)."""


def GET(data, ctx):
    ctx.response.sse(channels=[data.get("channel", "bench")])
