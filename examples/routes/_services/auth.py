"""Bearer tokens from a config value: ``$OXIAN_EXAMPLES_TOKENS``."""

import os

DEFAULT_TOKENS = "demo-token=Demo User"


def tokens_from(value):
    """``"token=Name,token2=Name 2"`` as ``{token: user}``."""
    users = {}
    for number, item in enumerate(filter(None, value.split(",")), start=1):
        token, _, name = item.strip().partition("=")
        users[token] = {"id": f"user-{number}", "name": name or token}
    return users


class Auth:
    def __init__(self, value=None):
        if value is None:
            value = os.environ.get("OXIAN_EXAMPLES_TOKENS", DEFAULT_TOKENS)
        self._users = tokens_from(value)

    def verify_token(self, token):
        """The user a token belongs to, or ``None``."""
        return self._users.get(token)

    def user_by_id(self, user_id):
        """The user with ``user_id``, or ``None``."""
        return next((u for u in self._users.values() if u["id"] == user_id), None)
