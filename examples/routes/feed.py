"""Conditional streaming: the same feed as ``?format=json`` (default), csv or xml."""

import csv
import io
import json
import time
from dataclasses import dataclass
from typing import Annotated, Literal
from xml.sax.saxutils import escape

from annotated_types import Interval


def feed_items(count):
    now = int(time.time() * 1000)
    for n in range(1, count + 1):
        yield {
            "id": n,
            "title": f"Item {n}",
            "content": f"Content of item {n} <with markup & commas, too>",
            "timestamp": now - n * 1000,
        }


async def stream_json_feed(response, items):
    stream = response.stream(headers={"Content-Type": "application/json"})
    await stream.write('{"feed":[')
    for n, item in enumerate(items):
        await stream.write(("," if n else "") + json.dumps(item))
    await stream.write("]}")


async def stream_csv_feed(response, items):
    stream = response.stream(headers={"Content-Type": "text/csv; charset=utf-8"})
    await stream.write("id,title,content,timestamp\n")
    for item in items:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow(item.values())
        await stream.write(out.getvalue())


async def stream_xml_feed(response, items):
    stream = response.stream(headers={"Content-Type": "application/xml; charset=utf-8"})
    await stream.write('<?xml version="1.0" encoding="UTF-8"?>\n<feed>')
    for item in items:
        fields = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in item.items())
        await stream.write(f"<item>{fields}</item>")
    await stream.write("</feed>\n")


FORMATS = {"json": stream_json_feed, "csv": stream_csv_feed, "xml": stream_xml_feed}


@dataclass
class Params:
    format: Literal["json", "csv", "xml"] = "json"
    count: Annotated[int, Interval(ge=0, le=100_000)] = 20


async def GET(data: Params, ctx):
    await FORMATS[data.format](ctx.response, feed_items(data.count))
