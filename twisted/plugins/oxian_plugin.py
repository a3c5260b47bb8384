"""
The ``twistd oxian`` plugin. Importing it imports nothing of oxian_tw:
``ServiceMaker`` resolves ``oxian_tw.tap`` when the plugin is used.
"""

from twisted.application.service import ServiceMaker

oxian = ServiceMaker(
    "oxian",
    "oxian_tw.tap",
    "Serve an oxian_tw route tree (file routes, streaming, Server-Sent Events).",
    "oxian",
)
