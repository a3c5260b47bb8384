"""
A room name from the path, as a hub channel name; which rooms are private
and who their members are (the demo's: ``demo-token``'s user is a member of
``private-team``).
"""

import re

from oxian_tw import HttpError

from .._params import text

ROOM = re.compile(r"[A-Za-z0-9_-]{1,64}")


def channel_for(data):
    room = data["room"]
    if not ROOM.fullmatch(room):
        raise HttpError(400, "A room name has 1 to 64 letters, digits, '_' or '-'")
    return f"room:{room}"


#: Private rooms and their members' user ids.
MEMBERS = {"private-team": {"user-1"}}


def is_private(room):
    """Whether ``room`` is reached only with a token."""
    return room.startswith("private-")


def display_name(ctx, data, fallback="guest"):
    """
    The name a visitor shows: the token's user (never the query) when the
    request has one, else ``?user=`` (public rooms only).
    """
    claims = getattr(ctx, "user", None)
    if claims is not None:
        user = ctx.dependencies.auth.user_by_id(claims["sub"])
        return user["name"] if user else claims["sub"]
    return text(data, "user", fallback, max_length=64) or fallback
