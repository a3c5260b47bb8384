"""
Declared data (SPEC §3): the conversion rules of `oxian_tw._declared` for
each declaration style, and the 422 an app answers through the in-memory
client (after middleware, request id included).
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, NotRequired, TypedDict

import annotated_types as at
import attrs
from twisted.trial.unittest import SynchronousTestCase

from oxian_tw import HttpError
from oxian_tw._declared import Invalid, adapt, model_converter
from oxian_tw._errors import RouteTreeError

from .helpers import RoutesTestCase, make_tree

try:
    import pydantic
except ImportError:  # pragma: no cover - tox installs it
    pydantic = None  # type: ignore[assignment]


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Export:
    rows: Annotated[int, at.Interval(ge=0, le=1000)] = 10
    ratio: float = 1.0
    header: bool = True
    tags: list[str] = dataclasses.field(default_factory=list)
    color: Color = Color.RED
    level: Level = Level.LOW
    mode: Literal["fast", "slow"] = "fast"
    limit: int | None = None
    name: str = "export"


@dataclasses.dataclass
class Required:
    id: int
    when: date


@attrs.define
class AttrsExport:
    rows: int = 10
    _secret: str = "x"
    header: bool = attrs.field(default=True)
    ids: tuple[int, ...] = ()


class DictExport(TypedDict):
    rows: int
    header: NotRequired[bool]


@dataclasses.dataclass
class Point:
    x: float
    y: float


@dataclasses.dataclass
class Shape:
    points: list[Point]
    meta: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Window:
    low: int
    high: int

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError("low must not exceed high")


class Opaque:
    pass


@dataclasses.dataclass
class Unconvertible:
    thing: Opaque


def convert(cls: type, data: dict[str, Any]) -> Any:
    converter = model_converter(cls)
    assert converter is not None
    return converter(data, "")


def details(cls: type, data: dict[str, Any]) -> list[dict[str, str]]:
    try:
        convert(cls, data)
    except Invalid as exc:
        return exc.details
    raise AssertionError("no error")


class DataclassTests(SynchronousTestCase):
    def test_strings_converted(self) -> None:
        """Query strings become the declared numbers, booleans, enums, lists."""
        got = convert(
            Export,
            {
                "rows": "25",
                "ratio": "0.5",
                "header": "Off",
                "tags": "a",
                "color": "blue",
                "level": "2",
                "mode": "slow",
                "limit": "7",
                "ignored": "x",
            },
        )
        self.assertEqual(
            got,
            Export(
                rows=25,
                ratio=0.5,
                header=False,
                tags=["a"],
                color=Color.BLUE,
                level=Level.HIGH,
                mode="slow",
                limit=7,
            ),
        )

    def test_defaults(self) -> None:
        self.assertEqual(convert(Export, {}), Export())

    def test_booleans(self) -> None:
        for word, value in [
            ("true", True),
            ("TRUE", True),
            ("1", True),
            ("yes", True),
            ("On", True),
            ("false", False),
            ("0", False),
            ("no", False),
            ("OFF", False),
        ]:
            self.assertIs(convert(Export, {"header": word}).header, value, word)
        self.assertEqual(details(Export, {"header": "maybe"})[0]["field"], "header")

    def test_lists(self) -> None:
        """A repeated key's list and a single value both fill a list."""
        self.assertEqual(convert(Export, {"tags": ["a", "b"]}).tags, ["a", "b"])
        self.assertEqual(convert(Export, {"tags": "a"}).tags, ["a"])

    def test_optional(self) -> None:
        """``X | None`` takes None and the empty string as None."""
        self.assertIsNone(convert(Export, {"limit": ""}).limit)
        self.assertIsNone(convert(Export, {"limit": None}).limit)
        self.assertEqual(
            details(Export, {"limit": "x"}),
            [{"field": "limit", "error": "not an integer"}],
        )

    def test_every_field_named(self) -> None:
        """One entry per failing field, each saying what was wrong."""
        self.assertEqual(
            details(
                Export,
                {
                    "rows": "abc",
                    "ratio": "nan",
                    "color": "green",
                    "mode": "medium",
                    "tags": ["a", 1],
                },
            ),
            [
                {"field": "rows", "error": "not an integer"},
                {"field": "ratio", "error": "not a finite number"},
                {"field": "tags[1]", "error": "not a string"},
                {"field": "color", "error": "not one of: red, blue"},
                {"field": "mode", "error": "not one of: fast, slow"},
            ],
        )

    def test_integers(self) -> None:
        """Digits with a sign; not floats' text, not booleans, not huge."""
        self.assertEqual(convert(Export, {"rows": "+7"}).rows, 7)
        self.assertEqual(convert(Export, {"rows": 7.0}).rows, 7)
        for bad in ["1.5", "1e3", "", " ", True, 2.5, "9" * 5000, "٣"]:
            self.assertEqual(
                details(Export, {"rows": bad}),
                [{"field": "rows", "error": "not an integer"}],
                repr(bad)[:20],
            )

    def test_constraints(self) -> None:
        """``Annotated`` ranges from annotated_types are checked."""
        self.assertEqual(
            details(Export, {"rows": "1001"}),
            [{"field": "rows", "error": "must be at most 1000"}],
        )
        self.assertEqual(
            details(Export, {"rows": "-1"}),
            [{"field": "rows", "error": "must be at least 0"}],
        )

    def test_required(self) -> None:
        self.assertEqual(
            details(Required, {}),
            [
                {"field": "id", "error": "required"},
                {"field": "when", "error": "required"},
            ],
        )
        got = convert(Required, {"id": "3", "when": "2026-12-06"})
        self.assertEqual(got, Required(id=3, when=date(2026, 12, 6)))

    def test_nested(self) -> None:
        """A JSON body's objects fill nested types; fields named by path."""
        got = convert(Shape, {"points": [{"x": 1, "y": "2"}], "meta": {"a": "1"}})
        self.assertEqual(got, Shape(points=[Point(1.0, 2.0)], meta={"a": 1}))
        self.assertEqual(
            details(Shape, {"points": [{"x": 1}, 3], "meta": {"a": "z"}}),
            [
                {"field": "points[0].y", "error": "required"},
                {"field": "points[1]", "error": "not an object"},
                {"field": "meta.a", "error": "not an integer"},
            ],
        )

    def test_post_init(self) -> None:
        """A ValueError the type raises is an error of the whole value."""
        self.assertEqual(
            details(Window, {"low": "5", "high": "1"}),
            [{"field": "data", "error": "low must not exceed high"}],
        )

    def test_scalars(self) -> None:
        @dataclasses.dataclass
        class Many:
            u: uuid.UUID
            d: Decimal
            t: datetime

        value = uuid.uuid4()
        got = convert(Many, {"u": str(value), "d": "1.25", "t": "2026-12-06T10:00"})
        self.assertEqual(got, Many(value, Decimal("1.25"), datetime(2026, 12, 6, 10)))
        self.assertEqual(
            [d["field"] for d in details(Many, {"u": "x", "d": "x", "t": "x"})],
            ["u", "d", "t"],
        )

    def test_unconvertible_annotation(self) -> None:
        """A field type no rule converts is an error when the type is read."""
        with self.assertRaises(TypeError) as caught:
            model_converter(Unconvertible)
        self.assertIn("Unconvertible", str(caught.exception))


class AttrsTests(SynchronousTestCase):
    def test_converted(self) -> None:
        """Fields by their init names (``_secret`` is ``secret``)."""
        got = convert(
            AttrsExport, {"rows": "3", "secret": "s", "header": "no", "ids": "4"}
        )
        self.assertEqual(got, AttrsExport(rows=3, secret="s", header=False, ids=(4,)))

    def test_errors(self) -> None:
        self.assertEqual(
            details(AttrsExport, {"rows": "x", "ids": ["1", "y"]}),
            [
                {"field": "rows", "error": "not an integer"},
                {"field": "ids[1]", "error": "not an integer"},
            ],
        )


class TypedDictTests(SynchronousTestCase):
    def test_converted(self) -> None:
        """A TypedDict gives a dict of the declared keys only."""
        self.assertEqual(
            convert(DictExport, {"rows": "3", "header": "yes", "x": 1}),
            {"rows": 3, "header": True},
        )
        self.assertEqual(convert(DictExport, {"rows": "3"}), {"rows": 3})

    def test_errors(self) -> None:
        self.assertEqual(
            details(DictExport, {"header": "x"}),
            [
                {"field": "rows", "error": "required"},
                {
                    "field": "header",
                    "error": "not a boolean (true/false, 1/0, yes/no, on/off)",
                },
            ],
        )


class PydanticTests(SynchronousTestCase):
    def setUp(self) -> None:
        if pydantic is None:
            self.skipTest("pydantic is not installed")

    def model(self) -> type:
        class Params(pydantic.BaseModel):
            rows: int = pydantic.Field(10, ge=0)
            header: bool = True
            tags: list[str] = []

        return Params

    def test_converted(self) -> None:
        """pydantic's lax mode, and a single value fills a declared list."""
        got = convert(self.model(), {"rows": "5", "header": "off", "tags": "a"})
        self.assertEqual((got.rows, got.header, got.tags), (5, False, ["a"]))

    def test_errors(self) -> None:
        found = details(self.model(), {"rows": "abc", "header": "maybe"})
        self.assertEqual([d["field"] for d in found], ["rows", "header"])
        self.assertTrue(all(d["error"] for d in found))


class AdaptTests(SynchronousTestCase):
    def test_undeclared(self) -> None:
        """Handlers without a declared type are not wrapped."""

        def plain(data, ctx):  # type: ignore[no-untyped-def]
            return data

        def typed(data: dict[str, Any], ctx: Any) -> Any:
            return data

        def unresolved(data: NoSuchName, ctx: Any) -> Any:  # type: ignore[name-defined] # noqa: F821
            return data

        for fn in [plain, typed, unresolved]:
            self.assertIs(adapt(fn), fn)

    def test_declared(self) -> None:
        """The wrapper converts, then calls; a failure is the 422."""

        def handler(data: Export, ctx: Any) -> Any:
            return data, ctx

        wrapped = adapt(handler)
        self.assertEqual(wrapped({"rows": "2"}, "ctx"), (Export(rows=2), "ctx"))
        with self.assertRaises(HttpError) as caught:
            wrapped({"rows": "abc"}, "ctx")
        error = caught.exception
        self.assertEqual(
            (error.status_code, error.message, error.code, error.details),
            (
                422,
                "Invalid parameters",
                "invalid_params",
                [{"field": "rows", "error": "not an integer"}],
            ),
        )

    def test_async(self) -> None:
        """A coroutine function's wrapper gives its coroutine."""

        async def handler(data: Export, ctx: Any) -> Any:
            return data.rows

        coroutine = adapt(handler)({"rows": "4"}, None)
        with self.assertRaises(StopIteration) as stopped:
            coroutine.send(None)
        self.assertEqual(stopped.exception.value, 4)


class AppTests(RoutesTestCase):
    routes = {
        "middleware.py": """
            def middleware(data, ctx):
                return {"data": {"limit": "3"}}
        """,
        "export.py": """
            import dataclasses

            @dataclasses.dataclass
            class Params:
                rows: int
                limit: int = 0
                header: bool = True

            def GET(data: Params, ctx):
                return dataclasses.asdict(data)
        """,
        "items/[id].py": """
            from typing import TypedDict

            class Params(TypedDict):
                id: int

            async def GET(data: Params, ctx):
                return {"id": data["id"] + 1}
        """,
    }

    def test_converted_after_middleware(self) -> None:
        """Query and what middleware merged, both converted."""
        response = self.get("/export?rows=5&header=no")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.json(), {"rows": 5, "limit": 3, "header": False})
        self.assertEqual(self.get("/items/41").json(), {"id": 42})

    def test_422(self) -> None:
        """A bad value: 422 JSON naming the field, the request id echoed."""
        response = self.get("/export?rows=abc")
        self.assertEqual(response.code, 422)
        self.assertEqual(
            response.json(),
            {
                "error": {
                    "message": "Invalid parameters",
                    "code": "invalid_params",
                    "details": [{"field": "rows", "error": "not an integer"}],
                }
            },
        )
        self.assertTrue(response.headers.get("x-request-id"))
        self.assertNotIn("Traceback", self.log_text())
        self.assertEqual(
            self.get("/items/x").json()["error"]["details"],
            [{"field": "id", "error": "not an integer"}],
        )


class StartupTests(SynchronousTestCase):
    def test_unconvertible_route(self) -> None:
        """A declaration no rule converts stops the start, naming the file."""
        from oxian_tw import OxianApp

        root = make_tree(
            self.mktemp(),
            {
                "bad.py": """
                    import dataclasses

                    class Opaque:
                        pass

                    @dataclasses.dataclass
                    class Params:
                        thing: Opaque

                    def GET(data: Params, ctx):
                        return None
                """
            },
        )
        with self.assertRaises(RouteTreeError) as caught:
            OxianApp(root)
        self.assertIn("bad.py", str(caught.exception))
        self.assertIn("Opaque", str(caught.exception))
