"""CSV streaming: every user, a page of 100 at a time, one write per page."""

import csv
import io


def csv_rows(users):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for user in users:
        writer.writerow([user["id"], user["name"], user["email"], user["created_at"]])
    return out.getvalue()


async def GET(data, ctx):
    user_service = ctx.dependencies.user_service
    ctx.response.stream(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": "attachment; filename=users.csv",
        }
    )
    await ctx.response.stream("id,name,email,created_at\n")

    page, page_size = 1, 100
    while True:
        users = user_service.find_many(page=page, limit=page_size)
        if not users:
            break
        # Awaiting each page lets a slow client pace the export.
        await ctx.response.stream(csv_rows(users))
        page += 1
