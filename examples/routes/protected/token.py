"""
A stream token for the demo user: ``POST`` with ``Authorization: Bearer
demo-token`` (how a page that has a session gets one for its EventSource).
"""

from oxian_tw import tokens

from .._services.stream_tokens import TTL


def POST(data, ctx):
    # The Bearer user (this folder's middleware): a stream token cannot
    # mint another, so its expiry holds.
    user = ctx.account
    token = tokens.sign(
        user["id"], channels=[f"user:{user['id']}:*"], ttl=TTL, now=ctx.clock.seconds()
    )
    return {"token": token, "expires_in": TTL}
