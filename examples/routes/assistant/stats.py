"""How many generations this process started (the tests read it)."""

from ._model import STARTED


def GET(data, ctx):
    return {"started": STARTED["count"]}
