"""
oxian_tw: the Oxian programming model (file-based routes, ``(data, ctx)``
handlers, streaming and Server-Sent Events) on Twisted.

Everything a user can receive, catch or annotate is importable from here
(SPEC §1); the SSE codec is `oxian_tw.sse`, the test client
`oxian_tw.testing`, the hub's interface `oxian_tw.hub.IHub`.
"""

from ._app import OxianApp
from ._config import ConfigError
from ._context import Context
from ._coroutines import AsyncioReactorRequired
from ._errors import HttpError, HubTimeout, HubUnavailable, RouteTreeError, StreamClosed
from ._eventstream import EventStream
from ._producer import Stream
from ._results import Response
from ._runs import RunHandle, Runs
from ._version import __version__

__all__ = (
    "AsyncioReactorRequired",
    "ConfigError",
    "Context",
    "EventStream",
    "HttpError",
    "HubTimeout",
    "HubUnavailable",
    "OxianApp",
    "Response",
    "RouteTreeError",
    "RunHandle",
    "Runs",
    "Stream",
    "StreamClosed",
    "__version__",
)
