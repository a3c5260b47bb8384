"""GET /docs/*path — a catch-all: one or more segments as a list."""


def GET(data, ctx):
    return {"path": data["path"], "route": ctx.route}
