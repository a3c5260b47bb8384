"""Connection management: at most MAX_CONNECTIONS streams on this route."""

from oxian_tw import HttpError

MAX_CONNECTIONS = 1000
active_connections = set()


def GET(data, ctx):
    if len(active_connections) >= MAX_CONNECTIONS:
        raise HttpError(503, "Too many connections", headers={"Retry-After": "5"})
    sse = ctx.response.sse()
    active_connections.add(sse)
    sse.done.addCallback(lambda _: active_connections.discard(sse))
    sse.send({"connections": len(active_connections)}, event="joined")
