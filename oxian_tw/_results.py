# -*- test-case-name: tests.test_app -*-
"""
What a handler's return value becomes on the wire (SPEC §3): the
`Response` value type and the one ladder from a result to a content type
and bytes. Pure: no Twisted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import attrs

from ._errors import HttpError
from ._json import JSON_CONTENT_TYPE, compact_encoder

JSON_TYPE = JSON_CONTENT_TYPE.encode("ascii")
TEXT_TYPE = b"text/plain; charset=utf-8"
BYTES_TYPE = b"application/octet-stream"


#: What a handler may return, said in the 500 for anything else.
_FORMS = (
    "None, str, bytes, a dict, list, number or bool, a dataclass or attrs "
    "instance, or a Response"
)


def _plain(value: Any) -> Any:
    """Dataclass and attrs instances as dicts, wherever they are in a result."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if attrs.has(type(value)):
        return {a.name: getattr(value, a.name) for a in attrs.fields(type(value))}
    raise _Unencodable(value)


class _Unencodable(TypeError):
    def __init__(self, value: Any) -> None:
        super().__init__(type(value))
        self.value = value


_RESULT_JSON = compact_encoder(default=_plain)


def encode_body(value: Any) -> tuple[bytes | None, bytes]:
    """
    A handler's return value as ``(default content type, bytes)``: JSON for
    dicts, lists, numbers, bools and dataclass or attrs instances (also
    nested).

    :raises HttpError: a ``500`` naming the type of a value with no HTTP
        form (code ``unencodable_result``).
    """
    if value is None:
        return None, b""
    if isinstance(value, str):
        return TEXT_TYPE, value.encode("utf-8")
    if isinstance(value, bytes | bytearray | memoryview):
        return BYTES_TYPE, bytes(value)
    try:
        return JSON_TYPE, _RESULT_JSON.encode(value).encode("utf-8")
    except _Unencodable as exc:
        found = exc.value
    except ValueError as exc:
        # NaN or infinity, or a circular reference.
        raise HttpError(
            500,
            f"The handler's result is not JSON: {exc}",
            code="unencodable_result",
        ) from exc
    what = type(found)
    where = "" if found is value else " inside its result"
    raise HttpError(
        500,
        f"The handler returned a {what.__module__}.{what.__qualname__}{where}, "
        f"which has no HTTP form; return {_FORMS}",
        code="unencodable_result",
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


def _header_dict(headers: Mapping[str, str]) -> dict[str, str]:
    return dict(headers)


@attrs.frozen
class Response:
    """
    A complete response a handler can return (or pass to ``send``): exactly
    this status, these headers (over those already set) and this body,
    encoded like a return value.
    """

    body: Any = None
    status: int = attrs.field(default=200, validator=lambda _i, _a, v: check_status(v))
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_header_dict)
