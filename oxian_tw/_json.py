# -*- test-case-name: tests.test_sse_codec -*-
"""
The one JSON encoder of responses, error bodies and events (SPEC §3, §5.2):
compact, UTF-8 as is, refusing NaN and infinities (not JSON). Pure: the
standard library only, so the SSE codec can use it.
"""

from __future__ import annotations

import json
from typing import Any

#: One instance: ``json.dumps`` with options builds a new encoder per call.
COMPACT_JSON = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def dump_json(value: Any) -> bytes:
    """Compact UTF-8 JSON, rejecting NaN and infinities (not JSON)."""
    return COMPACT_JSON.encode(value).encode("utf-8")
