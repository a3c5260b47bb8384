"""GET /users/:id — a path parameter, a dependency, and an HttpError for unknown ids."""

from oxian_tw import HttpError


def GET(data, ctx):
    user_id = data["id"]
    user = (
        ctx.dependencies.user_service.find(int(user_id)) if user_id.isdigit() else None
    )
    if user is None:
        raise HttpError(404, "User not found", code="USER_NOT_FOUND")
    return user
