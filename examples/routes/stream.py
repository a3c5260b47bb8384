"""Basic streaming: three chunks a second apart; the stream ends with the handler."""


async def GET(data, ctx):
    ctx.response.stream({"status": 200, "headers": {"Cache-Control": "no-cache"}})
    await ctx.response.stream("Hello ")
    await ctx.sleep(1)
    await ctx.response.stream("streaming ")
    await ctx.sleep(1)
    await ctx.response.stream("world!")
