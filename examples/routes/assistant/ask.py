"""
Ask the assistant: the answer is a run (``ctx.runs``) keyed by a new turn
id; it streams apart from this request, so a reload, a second tab or a
network blip never starts it again. Attach with ``GET
/assistant/turns/<turn>/events``; stop with ``POST .../stop``.
"""

import uuid

from oxian_tw import HttpError

from .._params import text
from ._model import tokens


async def POST(data, ctx):
    prompt = text(data, "prompt", max_length=2000)
    if not prompt:
        raise HttpError(400, "prompt required")
    turn = uuid.uuid4().hex
    handle = await ctx.runs.start(
        turn, lambda: tokens(prompt, ctx.clock), snapshot="".join
    )
    return {"turn": handle.key, "status": handle.status}
