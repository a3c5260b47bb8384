"""
Hub-based chat: a room is a hub channel. A new visitor first gets the
room's last 50 messages (``history=50``); a browser that reconnects sends
the id of the last message it saw (Last-Event-ID) and gets every message it
missed instead, then live ones; if too much was missed, one ``reset`` event
says so.

``?user=`` names the visitor: present in the room while the stream is open
(``who``), with ``join``/``leave`` events to everyone in it.
"""

from ..._params import text
from .._room import channel_for


def GET(data, ctx):
    user = text(data, "user", "guest", max_length=64) or "guest"
    ctx.response.sse(
        retry=3000,
        channels=[channel_for(data)],
        history=50,
        presence={"user": user},
        presence_events=True,
    )
