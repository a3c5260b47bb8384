"""
Request parameters as bounded numbers or text: anything else (a list from
a repeated query parameter, an uploaded file, a JSON object) is a 400,
never a 500.
"""

from oxian_tw import HttpError


def number(data, name, default, *, low, high, kind=float):
    """``data[name]`` (or ``default``) as ``kind``, between ``low`` and ``high``."""
    raw = data.get(name, default)
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise HttpError(400, f"{name} must be a number") from None
    if not low <= value <= high:
        raise HttpError(400, f"{name} must be between {low} and {high}")
    return value


def interval(data, default):
    """Seconds between updates: at least 0.1, so no timer can spin."""
    return number(data, "interval", default, low=0.1, high=3600)


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
