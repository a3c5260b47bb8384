"""``/use-sse.js``: the React hook of the ``/react`` page (an ES module)."""

import os

from oxian_tw import Response
from oxian_tw.client import CONTENT_TYPE

with open(os.path.join(os.path.dirname(__file__), "_static", "use-sse.js"), "rb") as f:
    SOURCE = f.read()


def GET(data, ctx):
    return Response(SOURCE, headers={"Content-Type": CONTENT_TYPE})
