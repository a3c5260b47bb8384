"""The SSE benchmark's subscribe route, written like the seed's chat."""

CLIENTS = set()


class Client:
    def __init__(self, sse):
        self.sse = sse


def GET(data, ctx):
    client = Client(ctx.response.sse())
    CLIENTS.add(client)
    client.sse.done.addCallback(lambda _: CLIENTS.discard(client))
