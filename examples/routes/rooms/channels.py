"""
Who may use which room (the channel policy, docs/security.md): a room is
the hub channel ``room:<name>``. Public rooms are open to everyone. A
private room (``private-...``) is reached only with a stream token for it
(``POST /rooms/<room>/token``, issued to its members): the token's channel
patterns name the room, and without a token nothing of it is served, its
history and presence included.
"""

from ._room import is_private


def authorize(ctx, channel, action):
    if not channel.startswith("room:"):
        return False
    if is_private(channel.removeprefix("room:")):
        # (The token's own patterns were checked first: it names this room.)
        return getattr(ctx, "user", None) is not None
    return True
