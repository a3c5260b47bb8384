"""
Request parameters. Numbers are declared on the handler (``data:
SomeParams``, a dataclass whose fields say ``Interval`` or
``Annotated[int, Interval(ge=0, le=N)]``): oxian_tw converts them and
answers a bad value with a 422 naming the field. Free text is read with
`text`: anything else (a list from a repeated query parameter, an
uploaded file, a JSON object) is a 400, never a 500.
"""

from typing import Annotated

from annotated_types import Interval as Between

from oxian_tw import HttpError

#: Seconds between updates: at least 0.1, so no timer can spin.
Interval = Annotated[float, Between(ge=0.1, le=3600)]


def text(data, name, default=None, *, max_length=2000):
    """``data[name]`` (or ``default``) as a string of at most ``max_length``."""
    value = data.get(name, default)
    if value is None:
        return None
    if not isinstance(value, str):
        raise HttpError(400, f"{name} must be a single text value")
    if len(value) > max_length:
        raise HttpError(400, f"{name} must be at most {max_length} characters")
    return value
