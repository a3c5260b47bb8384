"""GET /react — the seed's React hook (useSSE), on oxian-sse.js, live."""

import os

from oxian_tw import Response

with open(os.path.join(os.path.dirname(__file__), "_static", "react.html"), "rb") as f:
    PAGE = f.read()


def GET(data, ctx):
    return Response(PAGE, headers={"Content-Type": "text/html; charset=utf-8"})
