"""
``/vendor/react.js`` and ``/vendor/react-dom.js``: React 18's UMD builds
for the ``/react`` page, from the npm registry, not from this repository:

    mkdir -p examples/vendor && cd examples/vendor
    npm install react@18.3.1 react-dom@18.3.1

(or ``$OXIAN_EXAMPLES_VENDOR`` naming another ``node_modules``).
"""

import os

from oxian_tw import HttpError

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = {
    "react.js": os.path.join("react", "umd", "react.production.min.js"),
    "react-dom.js": os.path.join("react-dom", "umd", "react-dom.production.min.js"),
}


def node_modules():
    return os.environ.get("OXIAN_EXAMPLES_VENDOR") or os.path.join(
        HERE, "..", "..", "vendor", "node_modules"
    )


async def GET(data, ctx):
    name = FILES.get(data["file"])
    if name is None:
        raise HttpError(404, "Not found")
    root = node_modules()
    if not os.path.exists(os.path.join(root, name)):
        raise HttpError(
            404,
            "React is not installed: mkdir -p examples/vendor && cd "
            "examples/vendor && npm install react@18.3.1 react-dom@18.3.1",
        )
    ctx.response.headers({"Content-Type": "text/javascript; charset=utf-8"})
    await ctx.response.send_file(name, root)
