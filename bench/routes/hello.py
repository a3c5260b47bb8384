"""A small answer, for latency probes beside a heavy response."""


def GET(data, ctx):
    return "hello"
