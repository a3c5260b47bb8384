"""
``/vendor/react.js`` and ``/vendor/react-dom.js``: React 18's UMD builds
for the ``/react`` page, shipped with the example (``_static/vendor``,
MIT licence), so the page works with nothing installed but Python.
"""

import os

from oxian_tw import HttpError

VENDOR = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "_static", "vendor"
)
FILES = {
    "react.js": "react.production.min.js",
    "react-dom.js": "react-dom.production.min.js",
}


async def GET(data, ctx):
    name = FILES.get(data["file"])
    if name is None:
        raise HttpError(404, "Not found")
    ctx.response.headers({"Content-Type": "text/javascript; charset=utf-8"})
    await ctx.response.send_file(name, VENDOR)
