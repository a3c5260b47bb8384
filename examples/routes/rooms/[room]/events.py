"""
Hub-based chat: a room is a hub channel. A browser that reconnects sends
the id of the last message it saw (Last-Event-ID) and gets every message it
missed from the room's history, then live ones; if too much was missed, one
``reset`` event says so.
"""

from .._room import channel_for


def GET(data, ctx):
    ctx.response.sse(retry=3000, channels=[channel_for(data)])
