"""Who is in a room now, across every process sharing the hub."""

from .._room import channel_for


async def GET(data, ctx):
    present = await ctx.hub.presence(channel_for(data))
    return {
        "users": sorted(
            ({"id": sid, "user": info["user"]} for sid, info in present.items()),
            key=lambda entry: (entry["user"], entry["id"]),
        )
    }
