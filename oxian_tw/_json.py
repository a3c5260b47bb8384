# -*- test-case-name: tests.test_sse_codec -*-
"""
The one JSON encoder of responses, error bodies and events (SPEC §3, §5.2):
compact, UTF-8 as is, refusing NaN and infinities (not JSON). Pure: the
standard library only, so the SSE codec can use it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

#: The content type of every JSON body the framework writes.
JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def compact_encoder(default: Callable[[Any], Any] | None = None) -> json.JSONEncoder:
    """
    An encoder with the one set of options: compact, UTF-8 as is, no NaN;
    ``default`` turns other objects into JSON-able ones.
    """
    return json.JSONEncoder(
        separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=default
    )


#: One instance: ``json.dumps`` with options builds a new encoder per call.
COMPACT_JSON = compact_encoder()


def dump_json(value: Any) -> bytes:
    """Compact UTF-8 JSON, rejecting NaN and infinities (not JSON)."""
    return COMPACT_JSON.encode(value).encode("utf-8")
