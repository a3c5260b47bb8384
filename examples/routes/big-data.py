"""
Memory-efficient large data: every user (or those whose name contains
``?name=``) as ``{"results": [...]}``, read from one cursor 1,000 rows at a
time and written a batch per awaited write.
"""

import json

from ._params import text


async def GET(data, ctx):
    database = ctx.dependencies.database
    name = text(data, "name", max_length=200)
    stream = ctx.response.stream(headers={"Content-Type": "application/json"})
    await stream.write('{"results":[')
    first = True
    for batch in database.stream_query(name, page_size=1000):
        body = ",".join(json.dumps(record) for record in batch)
        await stream.write(body if first else "," + body)
        first = False
    await stream.write("]}")
