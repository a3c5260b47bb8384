"""
Relay another server's event stream, as a handler that streams what it
fetches would (an LLM API's SSE, an upstream CSV): here this app's own
``/events``, fetched with treq. ``pipe`` pauses the upstream connection
while this client's window is full, and drops it when this client leaves.
"""

import treq


async def GET(data, ctx):
    here = ctx.request.raw.getHost()
    upstream = await treq.get(
        f"http://127.0.0.1:{here.port}/events",
        headers={"Accept": "text/event-stream"},
        # Stream the body as it comes, instead of collecting it first.
        unbuffered=True,
        reactor=ctx.clock,
    )
    ctx.response.headers(
        {
            "Content-Type": upstream.headers.getRawHeaders(
                "content-type", ["text/event-stream"]
            )[0],
            "Cache-Control": "no-cache",
        }
    )
    await ctx.response.pipe(upstream)
