"""GET / — what this example app serves (the HTML demo page comes later)."""


def GET(data, ctx):
    return {
        "name": "oxian_tw examples",
        "routes": [route.pattern for route in ctx.app.routes.routes],
    }
