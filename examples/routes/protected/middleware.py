"""
Who is asking, for every route of this folder, before any parameter is
read (so a stranger gets a 401, never a 422): ``Authorization: Bearer
<token>`` (the demo token is ``demo-token``) or, from a browser's
EventSource (which can only ``GET`` and cannot send ``Authorization``),
``?token=`` with a stream token from ``POST /protected/token``. The user is
``ctx.account``; with a stream token its claims are ``ctx.user``, and the
stream ends with ``event: expired`` when it expires (the shipped client
then fetches a new one and reconnects).
"""

from oxian_tw import HttpError, tokens


def middleware(data, ctx):
    auth = ctx.dependencies.auth
    if ctx.request.method == "GET" and "token" in ctx.request.query:
        claims = tokens.require(data, ctx)["context"]["user"]
        return {
            "context": {
                "user": claims,
                "account": _known(auth.user_by_id(claims["sub"])),
            }
        }
    header = ctx.request.headers.get("authorization") or ""
    token = header.removeprefix("Bearer ").strip()
    if not token:
        raise _unauthorized("Authentication required")
    return {"context": {"account": _known(auth.verify_token(token), "Invalid token")}}


def _known(user, message="Unknown user"):
    if user is None:
        raise _unauthorized(message)
    return user


def _unauthorized(message):
    return HttpError(401, message, headers={"WWW-Authenticate": "Bearer"})
