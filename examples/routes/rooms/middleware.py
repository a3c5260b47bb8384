"""A stream token, when one is presented (``?token=`` or Bearer), is ``ctx.user``."""

from oxian_tw.tokens import optional as middleware

__all__ = ["middleware"]
