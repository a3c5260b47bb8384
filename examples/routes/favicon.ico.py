"""``/favicon.ico``: a small icon, so the browser's console shows no 404."""

from oxian_tw import Response

ICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    b'<rect width="16" height="16" rx="3" fill="#1f2937"/>'
    b'<path d="M3 11h2V6H3zm4 0h2V3H7zm4 0h2V8h-2z" fill="#34d399"/></svg>'
)


def GET(data, ctx):
    return Response(
        ICON,
        headers={"Content-Type": "image/svg+xml", "Cache-Control": "max-age=86400"},
    )
