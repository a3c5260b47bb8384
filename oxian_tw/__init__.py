"""
oxian_tw: the Oxian programming model (file-based routes, ``(data, ctx)``
handlers, streaming and Server-Sent Events) on Twisted.
"""

from ._app import OxianApp
from ._errors import HttpError, HubTimeout, HubUnavailable, StreamClosed
from ._producer import Stream
from ._results import Response

__version__ = "0.1.0"

__all__ = (
    "HttpError",
    "HubTimeout",
    "HubUnavailable",
    "OxianApp",
    "Response",
    "Stream",
    "StreamClosed",
    "__version__",
)
