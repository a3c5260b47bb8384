"""
The example app's stream token keys (`oxian_tw.tokens`): those of
``--token-key-file`` or ``$OXIAN_TOKEN_KEY`` when set, else a random key made
on first start beside the database (``./data/token-keys``), so the README's
first command still just works.
"""

import os
import secrets

from oxian_tw import tokens

#: Seconds a stream token the example issues lasts (short, to show renewal).
TTL = float(os.environ.get("OXIAN_EXAMPLES_STREAM_TOKEN_TTL", "120"))


def ensure_keys(database_path):
    """Configure the token keys if the app was given none."""
    try:
        tokens.sign("probe")
        return
    except tokens.NoTokenKey:
        pass
    path = os.path.join(os.path.dirname(os.path.abspath(database_path)), "token-keys")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(48) + "\n")
    tokens.configure(tokens.KeyRing.from_file(path))
