"""
``twistd -r uvloop``: Twisted's asyncio reactor over uvloop
(`oxian_tw.uvloopreactor`); importing this imports neither.
"""

from twisted.application.reactors import Reactor

uvloop = Reactor(
    "uvloop",
    "oxian_tw.uvloopreactor",
    "asyncio over uvloop (pip install uvloop): asyncio libraries in handlers.",
)
