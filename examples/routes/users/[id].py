"""GET /users/:id — a path parameter, and an HttpError for unknown ids."""

from oxian_tw import HttpError

USERS = {
    "1": {"name": "Ada Lovelace", "email": "ada@example.com"},
    "2": {"name": "Alan Turing", "email": "alan@example.com"},
}


def GET(data, ctx):
    user = USERS.get(data["id"])
    if user is None:
        raise HttpError(404, "User not found", code="USER_NOT_FOUND")
    return {"id": data["id"], **user}
