"""
Hub-based chat: a room is a hub channel. A new visitor first gets the
room's last 50 messages (``history=50``); a browser that reconnects sends
the id of the last message it saw (Last-Event-ID) and gets every message it
missed instead, then live ones; if too much was missed, one ``reset`` event
says so.

The visitor is present in the room while the stream is open (``who``),
with ``join``/``leave`` events to everyone in it, under the name of its
stream token's user, else (public rooms) ``?user=``. A private room needs
a token for it (``rooms/channels.py``): without one, 403 and nothing of it.
"""

from .._room import channel_for, display_name


def GET(data, ctx):
    user = display_name(ctx, data)
    ctx.response.sse(
        retry=3000,
        channels=[channel_for(data)],
        history=50,
        presence={"user": user},
        presence_events=True,
    )
