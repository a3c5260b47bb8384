# -*- test-case-name: tests.test_declared -*-
"""
Declared data (SPEC §3): a handler whose ``data`` parameter is annotated
with a dataclass, an attrs class, a ``TypedDict`` or a pydantic model gets
``data`` converted to that type before it runs; a failure is a ``422``
``invalid_params`` naming each field.

The converters are built once, when the route module is loaded (an
annotation no rule converts is a startup error naming the handler), and run
per request as plain calls. The conversion rules are written here once
(docs/handlers.md "Declared data" describes them):

- strings become the declared ``int`` (digits, optional sign), ``float``
  (finite), ``bool`` (``true/false/1/0/yes/no/on/off``, any case),
  ``Enum`` or ``Literal`` (by value), ``Decimal``, ``UUID``, ``datetime``,
  ``date`` and ``time`` (ISO 8601);
- a declared list, tuple, set or frozenset takes a repeated query key's
  list, and a single value as a one-element list;
- ``X | None`` takes ``None``, and the empty string when ``X`` does not;
- a nested declared type takes a JSON object (a body's);
- ``Annotated[X, ...]`` checks the ``annotated_types`` constraints it
  carries (``Ge``, ``Gt``, ``Le``, ``Lt``, ``Interval``, ``MinLen``,
  ``MaxLen``, ``Len``, ``MultipleOf``) after converting to ``X``;
- a missing key takes the type's default; without one it is an error;
- keys the type does not declare are ignored;
- a ``ValueError`` raised by the type itself (``__post_init__``, an attrs
  validator) is an error of the whole value.

pydantic models are validated by pydantic (lax mode already converts
strings), after the one rule pydantic lacks: a single value for a declared
list becomes a one-element list.

No general converter is used for the plain classes: cattrs structures
scalars with their constructors (``bool("false")`` is ``True``,
``int(2.7)`` is ``2``) and msgspec's lax mode knows neither ``yes``/``on``
nor single values for lists, so either would need a hook for every rule
above.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib
import math
import re
import typing
import uuid
from collections import abc
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from types import NoneType, UnionType
from typing import Any, NoReturn

import annotated_types
import attrs
from twisted.logger import Logger

from ._errors import HttpError

_log = Logger()

#: One entry of a 422's ``details``: ``{"field": ..., "error": ...}``.
Detail = dict[str, str]

#: Converts one value for the field named by the second argument.
Convert = Callable[[Any, str], Any]

_INTEGER = re.compile(r"[+-]?[0-9]+")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
#: What a declared sequence becomes, by its origin (``list[int]``) or
#: bare (``list``, ``typing.List``, ``Sequence``).
_SEQUENCES: dict[Any, type] = {
    list: list,
    tuple: tuple,
    set: set,
    frozenset: frozenset,
    abc.Sequence: list,
    typing.Sequence: list,
    typing.List: list,  # noqa: UP006 - the alias is what an annotation may say
}
_MAPPINGS = (dict, abc.Mapping, typing.Mapping, typing.Dict)  # noqa: UP006
_MISSING: Any = object()


class Invalid(Exception):
    """
    What a conversion found wrong: one `Detail` per field (raised inside
    the converters; the handler's wrapper turns it into the 422).
    """

    def __init__(self, details: list[Detail]) -> None:
        super().__init__(details)
        self.details = details


def _fail(field: str, error: str) -> NoReturn:
    raise Invalid([{"field": field, "error": error}])


def invalid_params(details: list[Detail]) -> HttpError:
    """The 422 of SPEC §3 for ``details``."""
    return HttpError(422, "Invalid parameters", code="invalid_params", details=details)


# --- scalars ---------------------------------------------------------------


def _to_str(value: Any, field: str) -> str:
    if isinstance(value, str):
        return value
    _fail(field, "not a string")


def _to_int(value: Any, field: str) -> int:
    if isinstance(value, bool):
        _fail(field, "not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        try:
            return int(value)
        except ValueError:  # more digits than Python converts
            pass
    _fail(field, "not an integer")


def _to_float(value: Any, field: str) -> float:
    if isinstance(value, bool):
        _fail(field, "not a number")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            _fail(field, "not a number")
    else:
        _fail(field, "not a number")
    if not math.isfinite(number):
        _fail(field, "not a finite number")
    return number


def _to_bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    _fail(field, "not a boolean (true/false, 1/0, yes/no, on/off)")


def _parsing(kind: type, parse: Callable[[str], Any], error: str) -> Convert:
    def convert(value: Any, field: str) -> Any:
        if isinstance(value, kind):
            return value
        if isinstance(value, str):
            try:
                return parse(value)
            except (ValueError, InvalidOperation):
                pass
        _fail(field, error)

    return convert


def _to_decimal(value: Any, field: str) -> Decimal:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, Decimal | str):
        try:
            number = Decimal(value)
        except InvalidOperation:
            _fail(field, "not a number")
        if number.is_finite():
            return number
    _fail(field, "not a finite number")


_SCALARS: dict[Any, Convert] = {
    str: _to_str,
    int: _to_int,
    float: _to_float,
    bool: _to_bool,
    Decimal: _to_decimal,
    uuid.UUID: _parsing(uuid.UUID, uuid.UUID, "not a UUID"),
    # datetime before date: a datetime is a date.
    datetime: _parsing(datetime, datetime.fromisoformat, "not an ISO 8601 datetime"),
    date: _parsing(date, date.fromisoformat, "not an ISO 8601 date"),
    time: _parsing(time, time.fromisoformat, "not an ISO 8601 time"),
}


def _choices(options: list[Any], make: Callable[[Any], Any]) -> Convert:
    """By value; a string matches a non-string option by its text."""
    by_text = {str(option): option for option in options}
    shown = ", ".join(by_text)

    def convert(value: Any, field: str) -> Any:
        for option in options:
            if value == option and type(value) is type(option):
                return make(option)
        if isinstance(value, str) and value in by_text:
            return make(by_text[value])
        _fail(field, f"not one of: {shown}")

    return convert


# --- composite types -------------------------------------------------------


def _sequence(kind: type, item: Convert) -> Convert:
    def convert(value: Any, field: str) -> Any:
        if not isinstance(value, list | tuple):
            value = [value]
        items, details = [], []
        for index, element in enumerate(value):
            try:
                items.append(item(element, f"{field}[{index}]"))
            except Invalid as exc:
                details.extend(exc.details)
        if details:
            raise Invalid(details)
        return kind(items)

    return convert


def _mapping(key: Convert, item: Convert) -> Convert:
    def convert(value: Any, field: str) -> dict[Any, Any]:
        if not isinstance(value, Mapping):
            _fail(field, "not an object")
        result, details = {}, []
        for name, element in value.items():
            try:
                result[key(name, field)] = item(element, f"{field}.{name}")
            except Invalid as exc:
                details.extend(exc.details)
        if details:
            raise Invalid(details)
        return result

    return convert


def _optional(inner: Convert) -> Convert:
    def convert(value: Any, field: str) -> Any:
        if value is None:
            return None
        try:
            return inner(value, field)
        except Invalid:
            if value == "":
                return None
            raise

    return convert


def _union(arms: list[Convert]) -> Convert:
    def convert(value: Any, field: str) -> Any:
        errors: list[str] = []
        for arm in arms:
            try:
                return arm(value, field)
            except Invalid as exc:
                errors.extend(d["error"] for d in exc.details)
        _fail(field, " or ".join(dict.fromkeys(errors)))

    return convert


def _constrained(inner: Convert, checks: list[Callable[[Any], str | None]]) -> Convert:
    def convert(value: Any, field: str) -> Any:
        value = inner(value, field)
        for check in checks:
            error = check(value)
            if error is not None:
                _fail(field, error)
        return value

    return convert


def _check(constraint: Any) -> Callable[[Any], str | None] | None:
    """The check of one ``annotated_types`` constraint (None: not one)."""
    at = annotated_types
    if isinstance(constraint, at.Ge):
        low = constraint.ge
        return lambda v: None if v >= low else f"must be at least {low}"
    if isinstance(constraint, at.Gt):
        above = constraint.gt
        return lambda v: None if v > above else f"must be greater than {above}"
    if isinstance(constraint, at.Le):
        high = constraint.le
        return lambda v: None if v <= high else f"must be at most {high}"
    if isinstance(constraint, at.Lt):
        below = constraint.lt
        return lambda v: None if v < below else f"must be less than {below}"
    if isinstance(constraint, at.MultipleOf):
        step = constraint.multiple_of
        return lambda v: None if v % step == 0 else f"must be a multiple of {step}"
    if isinstance(constraint, at.MinLen):
        least = constraint.min_length
        return lambda v: None if len(v) >= least else f"must have at least {least}"
    if isinstance(constraint, at.MaxLen):
        most = constraint.max_length
        return lambda v: None if len(v) <= most else f"must have at most {most}"
    return None


def _annotated(args: tuple[Any, ...], owner: str) -> Convert:
    inner = converter(args[0], owner)
    checks = []
    for metadata in args[1:]:
        constraints = (
            list(metadata)
            if isinstance(metadata, annotated_types.GroupedMetadata)
            else [metadata]
        )
        for constraint in constraints:
            check = _check(constraint)
            if check is not None:
                checks.append(check)
    return _constrained(inner, checks) if checks else inner


def _pass(value: Any, field: str) -> Any:
    return value


def converter(annotation: Any, owner: str) -> Convert:
    """
    The converter of one field's ``annotation``; ``owner`` names the
    declaring type in the error raised for an annotation no rule converts.
    """
    if annotation in (Any, object):
        return _pass
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if annotation is NoneType or annotation is None:
        return _choices([None], lambda v: v)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _annotated(args, owner)
    if origin in (typing.Required, typing.NotRequired):
        return converter(args[0], owner)
    if origin is typing.Literal:
        return _choices(list(args), lambda v: v)
    if origin is typing.Union or origin is UnionType:
        arms = [a for a in args if a is not NoneType]
        inner = (
            converter(arms[0], owner)
            if len(arms) == 1
            else _union([converter(a, owner) for a in arms])
        )
        return _optional(inner) if len(arms) < len(args) else inner
    if origin in _SEQUENCES:
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            raise TypeError(
                f"{owner}: only tuple[X, ...] is converted, not {annotation!r}"
            )
        return _sequence(_SEQUENCES[origin], converter(args[0], owner))
    if annotation in _SEQUENCES:
        return _sequence(_SEQUENCES[annotation], _pass)
    if origin in _MAPPINGS or annotation in _MAPPINGS:
        key, item = args if len(args) == 2 else (Any, Any)
        return _mapping(converter(key, owner), converter(item, owner))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _choices([m.value for m in annotation], annotation)
    model = model_converter(annotation)
    if model is not None:
        return model
    raise TypeError(f"{owner}: no conversion to {annotation!r} (SPEC §3)")


# --- declared types --------------------------------------------------------


@attrs.frozen
class _Field:
    key: str
    convert: Convert
    required: bool


def _fields_converter(
    cls: type,
    declared: list[tuple[str, Any, bool]],
    make: Callable[[dict[str, Any]], Any],
) -> Convert:
    """
    The converter of a declared type whose fields are ``declared`` (key,
    annotation, required); ``make`` builds the value from the converted
    fields (a ``ValueError`` it raises is an error of the whole value).
    """
    fields = [
        _Field(key, converter(hint, cls.__qualname__), required)
        for key, hint, required in declared
    ]

    def convert(value: Any, prefix: str) -> Any:
        if not isinstance(value, Mapping):
            _fail(prefix or "data", "not an object")
        values, details = {}, []
        for field in fields:
            path = f"{prefix}.{field.key}" if prefix else field.key
            raw = value.get(field.key, _MISSING)
            if raw is _MISSING:
                if field.required:
                    details.append({"field": path, "error": "required"})
                continue
            try:
                values[field.key] = field.convert(raw, path)
            except Invalid as exc:
                details.extend(exc.details)
        if details:
            raise Invalid(details)
        try:
            return make(values)
        except ValueError as exc:
            raise Invalid([{"field": prefix or "data", "error": str(exc)}]) from None

    return convert


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _dataclass(cls: type) -> Convert:
    hints = _hints(cls)
    declared = [
        (
            f.name,
            hints.get(f.name, Any),
            f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
        if f.init
    ]
    return _fields_converter(cls, declared, lambda values: cls(**values))


def _attrs(cls: type) -> Convert:
    hints = _hints(cls)
    declared = [
        # By the name its __init__ takes (``_secret`` is ``secret``).
        (a.alias, hints.get(a.name, a.type or Any), a.default is attrs.NOTHING)
        for a in attrs.fields(cls)
        if a.init
    ]
    return _fields_converter(cls, declared, lambda values: cls(**values))


def _typed_dict(cls: type) -> Convert:
    hints = _hints(cls)
    required = getattr(cls, "__required_keys__", frozenset(hints))
    declared = [
        (
            name,
            hint,
            # Said on the field wins: with string annotations (PEP 563) the
            # class's own key sets miss NotRequired on Python 3.11.
            {typing.Required: True, typing.NotRequired: False}.get(
                typing.get_origin(hint), name in required
            ),
        )
        for name, hint in hints.items()
    ]
    return _fields_converter(cls, declared, dict)


def _pydantic() -> Any:
    """The pydantic module, or None: pydantic is optional."""
    try:
        # Imported by name: oxian_tw neither needs pydantic nor its types.
        return importlib.import_module("pydantic")
    except ImportError:
        return None


def _pydantic_model(cls: Any) -> Convert:
    validation_error = _pydantic().ValidationError

    lists = {
        (field.alias or name)
        for name, field in cls.model_fields.items()
        if _is_sequence(field.annotation)
    }

    def convert(value: Any, prefix: str) -> Any:
        if isinstance(value, Mapping) and lists:
            value = dict(value)
            for key in lists & value.keys():
                if not isinstance(value[key], list | tuple):
                    value[key] = [value[key]]
        try:
            return cls.model_validate(value)
        except validation_error as exc:
            raise Invalid(
                [
                    {
                        "field": ".".join(
                            str(p) for p in (prefix, *e["loc"]) if p != ""
                        )
                        or "data",
                        "error": e["msg"],
                    }
                    for e in exc.errors(include_url=False)
                ]
            ) from None

    return convert


def _is_sequence(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_sequence(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is UnionType:
        return any(_is_sequence(a) for a in typing.get_args(annotation))
    return origin in _SEQUENCES or annotation in _SEQUENCES


def model_converter(annotation: Any) -> Convert | None:
    """
    The converter of a declared type — a dataclass, an attrs class, a
    ``TypedDict`` or a pydantic model — or None when ``annotation`` is not
    one.
    """
    if not isinstance(annotation, type):
        return None
    if dataclasses.is_dataclass(annotation):
        return _dataclass(annotation)
    if attrs.has(annotation):
        return _attrs(annotation)
    if typing.is_typeddict(annotation):
        return _typed_dict(annotation)
    pydantic = _pydantic()
    if pydantic is not None and issubclass(annotation, pydantic.BaseModel):
        return _pydantic_model(annotation)
    return None


def declared(fn: Callable[..., Any]) -> Any:
    """
    The type ``fn``'s first parameter (``data``) is annotated with, or None
    when there is none or it cannot be resolved (logged).
    """
    code = getattr(fn, "__code__", None)
    annotations = getattr(fn, "__annotations__", None)
    if code is None or not annotations or code.co_argcount < 1:
        return None
    name = code.co_varnames[0]
    if name not in annotations:
        return None
    annotation = annotations[name]
    if isinstance(annotation, str):
        try:
            annotation = eval(annotation, getattr(fn, "__globals__", {}))
        except Exception:
            _log.warn(
                "{handler}: the annotation of {name} ({annotation!r}) does not "
                "resolve; data stays a dict",
                handler=fn.__qualname__,
                name=name,
                annotation=annotation,
            )
            return None
    return annotation


def adapt(fn: Callable[..., Any]) -> Callable[..., Any]:
    """
    ``fn`` itself when its ``data`` is undeclared; else a handler that
    converts ``data`` to the declared type and calls ``fn`` with it,
    raising the 422 when the conversion fails. What ``fn`` returns
    (coroutine, Deferred, async iterator, value) is returned as is.
    """
    annotation = declared(fn)
    if annotation is None:
        return fn
    try:
        convert = model_converter(annotation)
    except TypeError as exc:
        raise TypeError(f"{fn.__qualname__}: {exc}") from None
    if convert is None:
        return fn

    @functools.wraps(fn)
    def handler(data: Any, ctx: Any) -> Any:
        try:
            value = convert(data, "")
        except Invalid as exc:
            raise invalid_params(exc.details) from None
        return fn(value, ctx)

    return handler
