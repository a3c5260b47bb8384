# -*- test-case-name: tests.test_files -*-
"""
The pure parts of ``response.send_file``: resolving a path safely inside a
root, validators (``ETag``, ``Last-Modified``), conditional requests and
byte ranges (RFC 9110 §8.8, §13, §14). No I/O beyond ``stat``.
"""

from __future__ import annotations

import enum
import mimetypes
import os
import stat
from email.utils import formatdate, parsedate_to_datetime
from typing import Literal

import attrs

from ._errors import HttpError
from ._text import is_decimal


@attrs.frozen
class FileInfo:
    """A regular file to serve, with its validators."""

    path: str
    size: int
    mtime: float
    etag: str
    last_modified: str
    content_type: str


def resolve(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> FileInfo:
    """
    ``path`` (relative to ``root``, or absolute) as a regular file inside
    ``root``, after following symbolic links.

    :raises HttpError: 403 when it leads outside ``root``, 404 when it does
        not exist or is not a regular file.
    """
    real_root = os.path.realpath(root)
    raw = os.fspath(path)
    if "\0" in raw:
        raise HttpError(404, "File not found")
    target = os.path.realpath(os.path.join(real_root, raw))
    if os.path.commonpath([real_root, target]) != real_root:
        raise HttpError(403, "Forbidden")
    try:
        info = os.stat(target)
    except OSError:
        raise HttpError(404, "File not found") from None
    if not stat.S_ISREG(info.st_mode):
        raise HttpError(404, "File not found")
    content_type, encoding = mimetypes.guess_type(target)
    if content_type is None or encoding is not None:
        content_type = "application/octet-stream"
    elif content_type.startswith("text/") or content_type in _UTF8_TYPES:
        content_type += "; charset=utf-8"
    return FileInfo(
        path=target,
        size=info.st_size,
        mtime=info.st_mtime,
        etag=f'"{info.st_mtime_ns:x}-{info.st_size:x}"',
        last_modified=formatdate(info.st_mtime, usegmt=True),
        content_type=content_type,
    )


_UTF8_TYPES = frozenset({"application/javascript", "application/json"})


def not_modified(
    info: FileInfo, if_none_match: str | None, if_modified_since: str | None
) -> bool:
    """
    Whether the client's copy is current (a ``304``). ``If-None-Match``
    wins over ``If-Modified-Since`` (RFC 9110 §13.2.2); tags compare weakly.
    """
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or info.etag in tags
    if if_modified_since is not None:
        since = _http_date(if_modified_since)
        return since is not None and int(info.mtime) <= since
    return False


#: `byte_range`'s answer for a range that selects no byte of the file.
class Unsatisfiable(enum.Enum):
    """A typed sentinel: the ``Range`` asked for can be served by no byte."""

    UNSATISFIABLE = "unsatisfiable"


UNSATISFIABLE = Unsatisfiable.UNSATISFIABLE


def byte_range(
    info: FileInfo, range_header: str | None, if_range: str | None
) -> tuple[int, int] | Literal[Unsatisfiable.UNSATISFIABLE] | None:
    """
    The single byte range ``(first, last)`` (inclusive) to send, `None`
    for the whole file, or `UNSATISFIABLE`.

    A syntactically invalid ``Range``, several ranges, or a stale
    ``If-Range`` give the whole file, as RFC 9110 §14.2 allows.
    """
    if range_header is None or not _if_range_holds(info, if_range):
        return None
    unit, _, spec = range_header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    if not dash or not is_decimal(first_text + last_text):
        return None
    size = info.size
    if not first_text:
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            return UNSATISFIABLE
        return max(size - suffix, 0), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:
        return None
    if first >= size:
        return UNSATISFIABLE
    return first, min(last, size - 1)


def _if_range_holds(info: FileInfo, if_range: str | None) -> bool:
    if if_range is None:
        return True
    if_range = if_range.strip()
    if if_range.startswith('"'):
        return if_range == info.etag
    since = _http_date(if_range)
    return since is not None and int(info.mtime) == since


def _http_date(text: str) -> int | None:
    try:
        return int(parsedate_to_datetime(text).timestamp())
    except (TypeError, ValueError, IndexError):
        return None
