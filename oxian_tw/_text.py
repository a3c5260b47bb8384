"""
Text rules shared by the codecs, sans I/O.

``str.isdigit`` accepts ``"²"`` and ``"①"``, which ``int`` then refuses
(or, for other scripts' digits, reads): numbers from the wire are ASCII
digits only.
"""

from __future__ import annotations

__all__ = ["is_decimal"]


def is_decimal(text: str) -> bool:
    """Whether ``text`` is one or more ASCII digits."""
    return text.isascii() and text.isdigit()
