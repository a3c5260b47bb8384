# -*- test-case-name: tests.test_body -*-
"""
Request bodies and query strings into Python values, and the ``data`` dict
of SPEC §3 (body < query < path params).

Pure: no Twisted. Malformed input raises `HttpError` 400.
"""

from __future__ import annotations

import json
import re
from email.message import Message
from typing import Any
from urllib.parse import parse_qsl, unquote

from ._errors import HttpError

_JSON_TYPES = ("application/json",)
#: Fields a form body may have (``form-fields``' default); more are a 413.
FORM_FIELDS = 1000
#: Bytes of one multipart part's header block.
_PART_HEAD_LIMIT = 16 * 1024
_TOO_MANY_FIELDS = "Too many form fields"
# A Content-Disposition parameter: name=token or name="quoted string".
_PARAM = re.compile(
    rb";[ \t]*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)[ \t]*=[ \t]*"
    rb'(?:"((?:[^"\\]|\\.)*)"|([^;]*))'
)
_QUOTED_PAIR = re.compile(rb"\\(.)")


def media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """Split a ``Content-Type`` value into its lower-cased type and params."""
    if not content_type:
        return "", {}
    message = Message()
    message["content-type"] = content_type
    params = {k.lower(): v for k, v in (message.get_params() or [])[1:]}
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


def parse_query(
    raw: bytes, max_fields: int | None = None
) -> dict[str, str | list[str]]:
    """
    Parse a query string; values are strings, a repeated key gives a list.

    :param max_fields: the most fields accepted (``None``: any number).
    :raises HttpError: 400 when it is not valid UTF-8 once decoded; 413
        past ``max_fields``.
    """
    try:
        pairs = parse_qsl(
            raw.decode("utf-8", "strict"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=max_fields,
        )
    except UnicodeDecodeError as exc:
        raise HttpError(400, "Query string is not valid UTF-8") from exc
    except ValueError:
        # parse_qsl's only other error: more than max_num_fields.
        raise HttpError(413, _TOO_MANY_FIELDS) from None
    return _multi(pairs)


def _decode_text(raw: bytes, charset: str, what: str) -> str:
    try:
        return raw.decode(charset)
    except (UnicodeDecodeError, LookupError) as exc:
        raise HttpError(400, f"{what} is not valid {charset}") from exc


def _disposition(value: bytes) -> tuple[bytes, dict[str, str]]:
    """A ``Content-Disposition`` value's type and parameters (RFC 7578)."""
    kind, _, rest = value.partition(b";")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(b";" + rest):
        name, quoted, token = match.groups()
        raw = _QUOTED_PAIR.sub(rb"\1", quoted) if quoted is not None else token.strip()
        key = name.decode("ascii").lower()
        if key.endswith("*"):
            # RFC 8187: charset'language'percent-encoded.
            charset, _, encoded = raw.decode("latin-1").partition("'")
            _, _, encoded = encoded.partition("'")
            try:
                params[key[:-1]] = unquote(encoded, charset or "utf-8", "strict")
            except (LookupError, UnicodeDecodeError):
                raise HttpError(400, "Malformed multipart/form-data body") from None
            continue
        # Browsers send names and file names as UTF-8 (the HTML standard).
        params.setdefault(key, raw.decode("utf-8", "replace"))
    return kind.strip().lower(), params


def _multipart(raw: bytes, content_type: str, max_fields: int) -> dict[str, Any]:
    # One pass, each search starting where the last ended: time linear in
    # the body, whatever its parts (the stdlib's email parser is not).
    boundary = media_type(content_type)[1].get("boundary", "")
    if not 0 < len(boundary) <= 70:
        raise HttpError(400, "Malformed multipart/form-data body")
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    # The first delimiter may open the body (no CRLF before it).
    raw = b"\r\n" + raw
    at = raw.find(delimiter)
    if at < 0:
        raise HttpError(400, "Malformed multipart/form-data body")
    pairs: list[tuple[str, Any]] = []
    while True:
        at += len(delimiter)
        if raw.startswith(b"--", at):
            return _multi(pairs)
        line_end = raw.find(b"\r\n", at)
        if line_end < 0 or raw[at:line_end].strip(b" \t"):
            raise HttpError(400, "Malformed multipart/form-data body")
        if len(pairs) == max_fields:
            raise HttpError(413, _TOO_MANY_FIELDS)
        head_start = line_end + 2
        head_end = raw.find(b"\r\n\r\n", head_start - 2, head_start + _PART_HEAD_LIMIT)
        if head_end < 0:
            raise HttpError(400, "Malformed multipart/form-data body")
        next_at = raw.find(delimiter, head_end + 4)
        if next_at < 0:
            raise HttpError(400, "Malformed multipart/form-data body")
        headers: dict[bytes, bytes] = {}
        for line in raw[head_start:head_end].split(b"\r\n"):
            if not line:
                continue
            header, colon, value = line.partition(b":")
            if not colon:
                raise HttpError(400, "Malformed multipart/form-data body")
            headers[header.strip().lower()] = value.strip()
        kind, params = _disposition(headers.get(b"content-disposition", b""))
        name = params.get("name")
        if kind != b"form-data" or not name:
            raise HttpError(400, "A multipart/form-data part has no name")
        content = raw[head_end + 4 : next_at]
        part_type, part_params = media_type(
            headers.get(b"content-type", b"").decode("latin-1") or None
        )
        filename = params.get("filename")
        if filename is not None:
            pairs.append(
                (
                    name,
                    {
                        "filename": filename,
                        "content_type": part_type or "application/octet-stream",
                        "size": len(content),
                        "content": content,
                    },
                )
            )
        else:
            charset = part_params.get("charset", "utf-8")
            pairs.append((name, _decode_text(content, charset, f"Field {name!r}")))
        at = next_at


def _no_constant(name: str) -> Any:
    # NaN, Infinity and -Infinity are not JSON (RFC 8259 §6); Python's
    # parser accepts them, and our own encoder then refuses the value.
    raise ValueError(f"{name} is not a JSON number")


def parse_body(
    content_type: str | None, raw: bytes, max_fields: int = FORM_FIELDS
) -> Any:
    """
    ``ctx.request.body`` for a request body (SPEC §3 table).

    An empty body is ``None`` whatever its type.

    :param max_fields: the most fields a form body may have.
    :raises HttpError: 400 for invalid JSON, bad encodings or a malformed
        multipart body; 413 for a form of more than ``max_fields`` fields.
    """
    if not raw:
        return None
    kind, params = media_type(content_type)
    charset = params.get("charset", "utf-8")
    if kind in _JSON_TYPES or kind.endswith("+json"):
        try:
            value = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError) as exc:
            raise HttpError(400, f"Invalid JSON body: {exc}") from exc
        except RecursionError:
            raise HttpError(400, "Invalid JSON body: nested too deeply") from None
        if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(value):
            # "\ud800" alone is valid JSON syntax but no Unicode text: it
            # could never be encoded again (a 500 when echoed).
            raise HttpError(400, "Invalid JSON body: a lone surrogate escape")
        return value
    if kind == "application/x-www-form-urlencoded":
        return parse_query(raw, max_fields)
    if kind == "multipart/form-data":
        return _multipart(raw, content_type or "", max_fields)
    if kind.startswith("text/"):
        return _decode_text(raw, charset, "Body")
    return None


#: A JSON escape of a UTF-16 surrogate (paired ones decode to one character).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    """Whether a string in the decoded JSON ``value`` holds a lone surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def build_data(
    body: Any, query: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    """``data``: a dict body, then the query, then path params, later wins."""
    if isinstance(body, dict):
        return {**body, **query, **params}
    return {**query, **params}
