# -*- test-case-name: tests.test_tokens -*-
"""
Short-lived stream tokens (SPEC §16): what a browser's ``EventSource``
(which cannot send ``Authorization``) presents as ``?token=``.

A token is a JWT (HS256, signed and verified by PyJWT) carrying a subject
(``sub``), the channel patterns it may use (``channels``: globs on the
whole name, ``*`` any run of characters) and an expiry (``exp``).

Keys come from ``--token-key-file PATH`` (one key a line) or
``$OXIAN_TOKEN_KEY`` (keys separated by white space), never from a
command-line value: the first key signs, every key verifies (each token
names its key, ``kid``), so keys rotate: add the new key first, keep the
old one until the tokens it signed have expired.

- `sign` and `verify`, on the keys `configure` installed (the app does, at
  start, from its settings).
- `require` and `optional`: middleware (``middleware = tokens.require``
  in a ``middleware.py``) reading ``Authorization: Bearer`` or
  ``?token=``: they set ``ctx.user`` to the token's claims (``sub``,
  ``channels``, ``exp``); a bad, forged or expired token is ``401`` with
  either; `optional` lets a request without a token through. The channel
  policy then denies any channel outside the token's patterns, and an SSE
  stream opened with the token gets ``event: expired`` when it expires.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

import jwt

from ._errors import HttpError

__all__ = (
    "InvalidToken",
    "KeyRing",
    "NoTokenKey",
    "configure",
    "matches",
    "optional",
    "require",
    "sign",
    "verify",
)

#: The environment variable that may hold the keys.
KEY_VARIABLE = "OXIAN_TOKEN_KEY"
#: Seconds a token lasts unless ``sign(ttl=...)`` says.
DEFAULT_TTL = 300.0
_ALGORITHM = "HS256"
#: Bytes a key has at least (HS256's own size: RFC 7518 §3.2).
MIN_KEY_BYTES = 32


class NoTokenKey(RuntimeError):
    """No key is configured: tokens cannot be signed or verified."""

    def __init__(self) -> None:
        super().__init__(
            "no token key: set --token-key-file PATH (a file of keys, one a "
            f"line) or ${KEY_VARIABLE}"
        )


class InvalidToken(HttpError):
    """A token that is malformed, forged, signed by no known key, or expired."""

    def __init__(self, why: str) -> None:
        super().__init__(
            401,
            f"Invalid token: {why}",
            code="invalid_token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


class KeyRing:
    """
    Keys (``bytes``), the first signing; each named by the first 16 hex
    digits of its SHA-256 (a token's ``kid``).
    """

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise NoTokenKey()
        for key in keys:
            if len(key) < MIN_KEY_BYTES:
                raise ValueError(
                    f"a token key must be at least {MIN_KEY_BYTES} bytes; one "
                    f"has {len(key)} (make one: python -c 'import secrets; "
                    "print(secrets.token_urlsafe(48))')"
                )
        self._keys = {hashlib.sha256(key).hexdigest()[:16]: key for key in keys}
        self._signing = next(iter(self._keys))

    @classmethod
    def from_text(cls, text: str) -> KeyRing:
        """Keys separated by white space (a key file, the variable)."""
        return cls([key.encode("utf-8") for key in text.split()])

    @classmethod
    def from_file(cls, path: str) -> KeyRing:
        with open(path, encoding="utf-8") as file:
            return cls.from_text(file.read())

    def sign(
        self,
        subject: str,
        channels: Iterable[str] = (),
        ttl: float = DEFAULT_TTL,
        now: float | None = None,
    ) -> str:
        """A token for ``subject`` allowing ``channels`` for ``ttl`` seconds."""
        issued = time.time() if now is None else now
        claims = {
            "sub": subject,
            "channels": list(channels),
            "iat": int(issued),
            "exp": int(issued + ttl),
        }
        token: str = jwt.encode(
            claims,
            self._keys[self._signing],
            algorithm=_ALGORITHM,
            headers={"kid": self._signing},
        )
        return token

    def verify(self, token: str, now: float | None = None) -> dict[str, Any]:
        """
        The token's claims.

        :raises InvalidToken: malformed, signed by no key here, forged, or
            expired at ``now`` (the clock's time, default the system's).
        """
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise InvalidToken("malformed") from None
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("unknown key")
        try:
            # Expiry is ours to check, on the app's clock.
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[_ALGORITHM],
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "require": ["sub", "exp"],
                },
            )
        except jwt.PyJWTError:
            raise InvalidToken("bad signature or claims") from None
        current = time.time() if now is None else now
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= current:
            raise InvalidToken("expired")
        channels = claims.get("channels", [])
        if not isinstance(channels, list) or not all(
            isinstance(c, str) for c in channels
        ):
            raise InvalidToken("bad channels")
        return claims


_ring: list[KeyRing | None] = [None]


def configure(ring: KeyRing | None) -> None:
    """Install the keys `sign`, `verify` and the middleware use."""
    _ring[0] = ring


def _keys() -> KeyRing:
    ring = _ring[0]
    if ring is None:
        text = os.environ.get(KEY_VARIABLE)
        if not text:
            raise NoTokenKey()
        ring = _ring[0] = KeyRing.from_text(text)
    return ring


def sign(
    subject: str,
    channels: Iterable[str] = (),
    ttl: float = DEFAULT_TTL,
    now: float | None = None,
) -> str:
    """
    A token for ``subject`` that allows ``channels`` (glob patterns) for
    ``ttl`` seconds.

    :raises NoTokenKey: no key is configured.
    """
    return _keys().sign(subject, channels, ttl, now)


def verify(token: str, now: float | None = None) -> dict[str, Any]:
    """
    The claims of ``token``.

    :raises InvalidToken: a bad, forged or expired token (``401``).
    :raises NoTokenKey: no key is configured.
    """
    return _keys().verify(token, now)


@functools.lru_cache(maxsize=1024)
def _pattern(glob: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in glob.split("*")), re.S)


def matches(patterns: Iterable[str], channel: str) -> bool:
    """Whether ``channel`` matches one of ``patterns`` (whole-name globs)."""
    return any(_pattern(p).fullmatch(channel) for p in patterns)


def _presented(ctx: Any) -> str | None:
    header = ctx.request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return str(value.strip())
        raise InvalidToken("not a Bearer token")
    token = ctx.request.query.get("token")
    if isinstance(token, list):
        raise InvalidToken("more than one token")
    return token if token else None


def require(data: Any, ctx: Any) -> dict[str, Any]:
    """
    Middleware: a valid token (``Authorization: Bearer`` or ``?token=``) or
    ``401``; ``ctx.user`` becomes its claims.
    """
    token = _presented(ctx)
    if token is None:
        raise InvalidToken("none presented")
    return {"context": {"user": verify(token, ctx.clock.seconds())}}


def optional(data: Any, ctx: Any) -> dict[str, Any] | None:
    """
    Middleware: as `require`, but a request without a token goes through
    (``ctx.user`` unset); a bad one is still ``401``.
    """
    token = _presented(ctx)
    if token is None:
        return None
    return {"context": {"user": verify(token, ctx.clock.seconds())}}
