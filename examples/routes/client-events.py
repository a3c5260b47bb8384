"""Memory management: one stream per client id; a new one replaces the old."""

from oxian_tw import HttpError

from ._params import text

connections = {}


def GET(data, ctx):
    client_id = text(data, "clientId", max_length=128)
    if not client_id:
        raise HttpError(400, "clientId required")
    previous = connections.get(client_id)
    if previous is not None:
        previous.close()
    sse = ctx.response.sse()
    connections[client_id] = sse

    def ended(_):
        # Only forget the entry if it is still this stream's.
        if connections.get(client_id) is sse:
            del connections[client_id]

    sse.done.addCallback(ended)
    sse.send({"clientId": client_id}, event="hello")
