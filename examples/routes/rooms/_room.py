"""A room name from the path, as a hub channel name."""

import re

from oxian_tw import HttpError

ROOM = re.compile(r"[A-Za-z0-9_-]{1,64}")


def channel_for(data):
    room = data["room"]
    if not ROOM.fullmatch(room):
        raise HttpError(400, "A room name has 1 to 64 letters, digits, '_' or '-'")
    return f"room:{room}"
