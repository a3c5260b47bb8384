"""
A turn's answer as SSE: each token an event, then ``end`` with its status
(``done``, ``stopped``, ``failed``, ``interrupted``). From the first token,
or from the browser's ``Last-Event-ID`` after a blip; once ended, the
whole answer in one ``snapshot`` event; a reconnect after the end gets 204,
so EventSource stops.
"""


def GET(data, ctx):
    ctx.response.sse(run=data["turn"])
