"""
A stream token for the demo user: ``POST`` with ``Authorization: Bearer
demo-token`` (how a page that has a session gets one for its EventSource).
"""

from oxian_tw import HttpError, tokens

from .._services.stream_tokens import TTL


def POST(data, ctx):
    header = ctx.request.headers.get("authorization") or ""
    user = ctx.dependencies.auth.verify_token(header.removeprefix("Bearer ").strip())
    if user is None:
        raise HttpError(
            401, "Authentication required", headers={"WWW-Authenticate": "Bearer"}
        )
    token = tokens.sign(
        user["id"], channels=[f"user:{user['id']}:*"], ttl=TTL, now=ctx.clock.seconds()
    )
    return {"token": token, "expires_in": TTL}
