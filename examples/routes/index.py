"""GET / — the demo page: live chat, a metrics dashboard, a stock ticker, downloads."""

import os

from oxian_tw import Response

with open(os.path.join(os.path.dirname(__file__), "_static", "index.html"), "rb") as f:
    PAGE = f.read()


def GET(data, ctx):
    return Response(PAGE, headers={"Content-Type": "text/html; charset=utf-8"})
