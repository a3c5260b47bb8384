"""GET /metrics — the app's hub and stream counters in Prometheus text format."""

from oxian_tw import Response
from oxian_tw.metrics import CONTENT_TYPE, exposition


def GET(data, ctx):
    return Response(exposition(ctx.app), headers={"Content-Type": CONTENT_TYPE})
