"""
A browser's EventSource cannot send ``Authorization``: with ``?token=``
(a stream token from ``POST /protected/token``) the request is
authenticated by it (``ctx.user``; 401 when bad), and the stream ends with
``event: expired`` when it expires (the shipped client then fetches a new
one and reconnects).
"""

from oxian_tw import tokens


def middleware(data, ctx):
    if "token" in ctx.request.query:
        return tokens.optional(data, ctx)
    return None
