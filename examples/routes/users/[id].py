"""GET /users/:id — a path parameter, a dependency, and an HttpError for unknown ids."""

from oxian_tw import HttpError


def GET(data, ctx):
    user_id = data["id"]
    # Ids are SQLite integers: ASCII digits, at most 18 of them.
    known = user_id.isascii() and user_id.isdigit() and len(user_id) <= 18
    user = ctx.dependencies.user_service.find(int(user_id)) if known else None
    if user is None:
        raise HttpError(404, "User not found", code="USER_NOT_FOUND")
    return user
