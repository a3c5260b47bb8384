# -*- test-case-name: tests.test_app -*-
"""
What a handler's return value becomes on the wire (SPEC §3): the
`Response` value type and the one ladder from a result to a content type
and bytes. Pure: no Twisted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ._json import dump_json

JSON_TYPE = b"application/json; charset=utf-8"
TEXT_TYPE = b"text/plain; charset=utf-8"
BYTES_TYPE = b"application/octet-stream"


def encode_body(value: Any) -> tuple[bytes | None, bytes]:
    """
    A handler's return value as ``(default content type, bytes)``.

    :raises TypeError: for values with no HTTP form (they become a 500).
    """
    if value is None:
        return None, b""
    if isinstance(value, str):
        return TEXT_TYPE, value.encode("utf-8")
    if isinstance(value, bytes | bytearray | memoryview):
        return BYTES_TYPE, bytes(value)
    if isinstance(value, dict | list | tuple | int | float | bool):
        try:
            return JSON_TYPE, dump_json(value)
        except ValueError as exc:
            raise TypeError(f"cannot encode the result as JSON: {exc}") from exc
    raise TypeError(
        f"a handler returned {type(value).__name__!r}, which has no HTTP form"
    )


def check_status(status: Any) -> int:
    """
    :raises TypeError: for a status that is not an ``int``.
    :raises ValueError: for one outside 100–599.
    """
    if isinstance(status, bool) or not isinstance(status, int):
        raise TypeError(f"status must be an int, not {type(status).__name__}")
    if not 100 <= status <= 599:
        raise ValueError(f"status {status} is not between 100 and 599")
    return status


@attrs.frozen
class Response:
    """
    A complete response a handler can return (or pass to ``send``): exactly
    this status, these headers (over those already set) and this body,
    encoded like a return value.
    """

    body: Any = None
    status: int = attrs.field(default=200, validator=lambda _i, _a, v: check_status(v))
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=dict)
