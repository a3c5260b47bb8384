"""The benchmark's many-small-writes route: ``rows`` CSV lines, each awaited."""


async def GET(data, ctx):
    stream = ctx.response.stream(headers={"Content-Type": "text/csv"})
    for n in range(int(data["rows"])):
        await stream.write(f"{n},{n * n}\n")
