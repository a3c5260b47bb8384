"""Stop a turn's answer, from any process: every tab gets ``end`` ``stopped``."""

from oxian_tw import HttpError


async def POST(data, ctx):
    handle = await ctx.runs.stop(data["turn"])
    if handle is None:
        raise HttpError(404, "No such turn")
    return {"turn": handle.key, "status": handle.status}
