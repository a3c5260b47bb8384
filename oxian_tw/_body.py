# -*- test-case-name: tests.test_body -*-
"""
Request bodies and query strings into Python values, and the ``data`` dict
of SPEC §3 (body < query < path params).

Pure: no Twisted. Malformed input raises `HttpError` 400.
"""

from __future__ import annotations

import json
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

from ._errors import HttpError

_JSON_TYPES = ("application/json",)


def media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """Split a ``Content-Type`` value into its lower-cased type and params."""
    if not content_type:
        return "", {}
    message = Message()
    message["content-type"] = content_type
    params = {k.lower(): v for k, v in message.get_params()[1:]}
    return message.get_content_type(), params


def _multi(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Pairs into a dict; a repeated key gives a list of its values."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            existing = result[key]
            if isinstance(existing, list):
                existing.append(value)
            else:
                result[key] = [existing, value]
        else:
            result[key] = value
    return result


def parse_query(raw: bytes) -> dict[str, str | list[str]]:
    """
    Parse a query string; values are strings, a repeated key gives a list.

    :raises HttpError: 400 when it is not valid UTF-8 once decoded.
    """
    try:
        pairs = parse_qsl(
            raw.decode("utf-8", "strict"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
        )
    except UnicodeDecodeError as exc:
        raise HttpError(400, "Query string is not valid UTF-8") from exc
    return _multi(pairs)


def _decode_text(raw: bytes, charset: str, what: str) -> str:
    try:
        return raw.decode(charset)
    except (UnicodeDecodeError, LookupError) as exc:
        raise HttpError(400, f"{what} is not valid {charset}") from exc


def _multipart(raw: bytes, content_type: str) -> dict[str, Any]:
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
    message = BytesParser(policy=HTTP).parsebytes(head + raw)
    if not message.is_multipart() or message.defects:
        raise HttpError(400, "Malformed multipart/form-data body")
    pairs: list[tuple[str, Any]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            raise HttpError(400, "A multipart/form-data part has no name")
        content = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            pairs.append(
                (
                    name,
                    {
                        "filename": filename,
                        "content_type": part.get_content_type(),
                        "size": len(content),
                        "content": content,
                    },
                )
            )
        else:
            charset = part.get_content_charset() or "utf-8"
            pairs.append((name, _decode_text(content, charset, f"Field {name!r}")))
    return _multi(pairs)


def _no_constant(name: str) -> Any:
    # NaN, Infinity and -Infinity are not JSON (RFC 8259 §6); Python's
    # parser accepts them, and our own encoder then refuses the value.
    raise ValueError(f"{name} is not a JSON number")


def parse_body(content_type: str | None, raw: bytes) -> Any:
    """
    ``ctx.request.body`` for a request body (SPEC §3 table).

    An empty body is ``None`` whatever its type.

    :raises HttpError: 400 for invalid JSON, bad encodings or a malformed
        multipart body.
    """
    if not raw:
        return None
    kind, params = media_type(content_type)
    charset = params.get("charset", "utf-8")
    if kind in _JSON_TYPES or kind.endswith("+json"):
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError) as exc:
            raise HttpError(400, f"Invalid JSON body: {exc}") from exc
        except RecursionError:
            raise HttpError(400, "Invalid JSON body: nested too deeply") from None
    if kind == "application/x-www-form-urlencoded":
        return parse_query(raw)
    if kind == "multipart/form-data":
        return _multipart(raw, content_type or "")
    if kind.startswith("text/"):
        return _decode_text(raw, charset, "Body")
    return None


def build_data(
    body: Any, query: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    """``data``: a dict body, then the query, then path params, later wins."""
    data: dict[str, Any] = dict(body) if isinstance(body, dict) else {}
    data.update(query)
    data.update(params)
    return data
