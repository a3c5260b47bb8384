"""
``/oxian-sse.js``: the browser SSE client shipped with oxian_tw, for the
demo pages. An app can also have ``twistd oxian --client-script
/oxian-sse.js`` serve it.
"""

from oxian_tw import Response
from oxian_tw.client import CONTENT_TYPE, script


def GET(data, ctx):
    return Response(
        script(), headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-cache"}
    )
