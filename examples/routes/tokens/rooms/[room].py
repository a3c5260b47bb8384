"""
``POST /tokens/rooms/<room>`` with ``Authorization: Bearer demo-token``: a
stream token for the room, for a private room only to its members. The
page passes it to EventSource as ``?token=`` (and to ``send`` as a
Bearer). (Outside ``rooms/``, whose middleware reads Bearer values as
stream tokens.)
"""

from oxian_tw import HttpError, tokens

from ..._services.stream_tokens import TTL
from ...rooms._room import MEMBERS, channel_for, is_private


def POST(data, ctx):
    channel = channel_for(data)
    header = ctx.request.headers.get("authorization") or ""
    user = ctx.dependencies.auth.verify_token(header.removeprefix("Bearer ").strip())
    if user is None:
        raise HttpError(
            401, "Authentication required", headers={"WWW-Authenticate": "Bearer"}
        )
    room = data["room"]
    if is_private(room) and user["id"] not in MEMBERS.get(room, ()):
        raise HttpError(403, "Not a member of this room")
    token = tokens.sign(
        user["id"], channels=[channel], ttl=TTL, now=ctx.clock.seconds()
    )
    return {"token": token, "expires_in": TTL}
