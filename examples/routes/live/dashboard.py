"""
The dashboard as a live chart: this server's metrics every second through
the hub channel ``dashboard``, the last 60 first (``history=60``), so the
chart opens already drawn.
"""


def GET(data, ctx):
    ctx.dependencies.feeds.start(ctx)
    ctx.response.sse(retry=5000, channels=["dashboard"], history=60)
