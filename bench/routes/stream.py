"""The benchmark's route: ``chunks`` writes of 64 KiB, each awaited."""

CHUNK = bytes(64 * 1024)


async def GET(data, ctx):
    count = int(data["chunks"])
    stream = ctx.response.stream(headers={"Content-Type": "application/octet-stream"})
    for _ in range(count):
        await stream.write(CHUNK)
