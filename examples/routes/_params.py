"""Query parameters as bounded numbers: anything else is a 400, never a 500."""

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
