"""
File streaming: any file of ``examples/uploads/`` (or of
``$OXIAN_EXAMPLES_UPLOADS``), at the client's pace, with ``Range``, ``ETag``
and ``HEAD``. Names leading out of the folder are 403, missing files 404.
"""

import os

UPLOADS = os.environ.get("OXIAN_EXAMPLES_UPLOADS") or os.path.join(
    os.path.dirname(__file__), "..", "..", "uploads"
)


def GET(data, ctx):
    filename = data["filename"]
    return ctx.response.send_file(
        filename,
        root=UPLOADS,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
