"""
``twistd -r uvloop``: Twisted's asyncio reactor over a uvloop event loop
(``pip install uvloop``; ``oxian_tw[uvloop]``). asyncio libraries work in
handlers exactly as with ``-r asyncio`` (SPEC §14); docs/performance.md
says what it costs and gains against epoll.
"""

from __future__ import annotations


def install() -> None:
    """Install the asyncio reactor on a new uvloop loop (the current one)."""
    import asyncio

    import uvloop
    from twisted.internet import asyncioreactor

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
