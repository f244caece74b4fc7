"""Plugin parameters: declared by a factory's signature, checked against recipes.

A plugin factory declares its recipe parameters as keyword parameters with
type annotations and (optionally) defaults::

    def random_rotation(degrees: Annotated[float, Range(0, 180)] = 15.0,
                        fill_mode: Literal["nearest", "reflect"] = "nearest",
                        seed: int | None = None): ...

Supported annotations: ``int``, ``float`` (an integer is accepted and
converted), ``bool``, ``str``, ``pathlib.Path`` (a string, resolved relative to
the recipe file that sets it), ``Literal[...]`` (one of the listed values),
``list[T]`` (a TOML array), ``T | None`` (the parameter may be left unset),
and ``Annotated[T, Range(min, max)]`` for a bounded number. A parameter
without a default is required. This module never imports TensorFlow.
"""

from __future__ import annotations

import inspect
import math
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal

REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class Range:
    """Bounds for a numeric parameter: ``Annotated[float, Range(0, 1)]``.

    Args:
        min: smallest allowed value (``None``: unbounded).
        max: largest allowed value (``None``: unbounded).
        min_inclusive: whether ``min`` itself is allowed.
        max_inclusive: whether ``max`` itself is allowed.
    """

    min: float | None = None
    max: float | None = None
    min_inclusive: bool = True
    max_inclusive: bool = True

    def check(self, value: float) -> bool:
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.min is not None:
            if value < self.min or (value == self.min and not self.min_inclusive):
                return False
        if self.max is not None:
            if value > self.max or (value == self.max and not self.max_inclusive):
                return False
        return True

    def describe(self) -> str:
        lo = "(" if not self.min_inclusive else "["
        hi = ")" if not self.max_inclusive else "]"
        a = "-inf" if self.min is None else _fmt(self.min)
        b = "inf" if self.max is None else _fmt(self.max)
        if self.max is None and self.min is not None:
            return f"{'>=' if self.min_inclusive else '>'} {a}"
        return f"{lo}{a}, {b}{hi}"


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


class ParamTypeError(ValueError):
    """A value does not match a parameter's declared type (message says why)."""


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter of a plugin."""

    name: str
    annotation: Any
    default: Any = REQUIRED
    description: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def type_name(self) -> str:
        return type_name(self.annotation)

    @property
    def is_path(self) -> bool:
        """Whether the parameter names files (a ``pathlib.Path``, optional or in a list):
        what a plugin reads from the file system, so cifarkit knows without its name."""
        stack = [self.annotation]
        while stack:
            ann = stack.pop()
            if ann is Path:
                return True
            stack.extend(a for a in typing.get_args(ann) if not isinstance(a, (str, int, float)))
        return False

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "type": self.type_name,
            "required": self.required,
            "default": None if self.required else plain(self.default),
            "description": self.description,
        }


def plain(value: Any, drop_none: bool = False) -> Any:
    """``value`` as plain TOML/JSON data: paths become strings, tuples lists,
    NumPy scalars and arrays Python numbers and lists, recursively.

    With ``drop_none``, ``None`` entries of tables are left out (TOML has no null).
    """
    if isinstance(value, dict):
        return {str(k): plain(v, drop_none) for k, v in value.items()
                if not (drop_none and v is None)}
    if isinstance(value, (list, tuple)):
        return [plain(v, drop_none) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # NumPy values
        return value.tolist()
    return value


def _split_annotated(ann: Any) -> tuple[Any, list[Range]]:
    if typing.get_origin(ann) is typing.Annotated:
        base, *extra = typing.get_args(ann)
        return base, [e for e in extra if isinstance(e, Range)]
    return ann, []


def _union_args(ann: Any) -> tuple | None:
    if typing.get_origin(ann) in (typing.Union, UnionType):
        return typing.get_args(ann)
    return None


def type_name(ann: Any) -> str:
    """A short human-readable name for an annotation (used in errors and docs)."""
    base, ranges = _split_annotated(ann)
    if ranges:
        bounds = ranges[0].describe()
        return f"{type_name(base)} {bounds}" if bounds[0] in "<>" else f"{type_name(base)} in {bounds}"
    args = _union_args(base)
    if args is not None:
        named = " | ".join(type_name(a) for a in args if a is not NoneType)
        return f"{named}, or leave it unset" if NoneType in args else named
    origin = typing.get_origin(base)
    if origin is Literal:
        return " | ".join(repr(v) for v in typing.get_args(base))
    if origin in (list, tuple):
        inner = typing.get_args(base)
        return f"list[{type_name(inner[0])}]" if inner else "list"
    if base is Path:
        return "path"
    if base is Any or base is REQUIRED:
        return "any"
    return getattr(base, "__name__", str(base))


def _describe_value(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "float", str: "string",
            list: "array", dict: "table"}.get(type(value), type(value).__name__)
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{kind} {text}"


def coerce(ann: Any, value: Any, base_dir: Path | None = None) -> Any:
    """Check ``value`` (a TOML value) against annotation ``ann``.

    Returns the value in its declared type (an int given for a float becomes a
    float; a path string becomes an absolute ``Path``). Raises
    :class:`ParamTypeError` with a message naming what is allowed.
    """
    base, ranges = _split_annotated(ann)
    try:
        out = _coerce_base(base, value, base_dir)
    except ParamTypeError:
        if not ranges:
            raise
        raise ParamTypeError(f"expected {type_name(ann)}, got {_describe_value(value)}") from None
    for r in ranges:
        if out is not None and not r.check(out):
            raise ParamTypeError(
                f"{_describe_value(value)} is out of range; allowed: {type_name(ann)}")
    return out


def _coerce_base(base: Any, value: Any, base_dir: Path | None) -> Any:
    if base is Any or base is REQUIRED:
        return value
    args = _union_args(base)
    if args is not None:
        for option in args:
            if option is NoneType:
                continue
            try:
                return coerce(option, value, base_dir)
            except ParamTypeError:
                continue
        raise ParamTypeError(
            f"expected {type_name(base)}, got {_describe_value(value)}")
    origin = typing.get_origin(base)
    if origin is Literal:
        options = typing.get_args(base)
        for option in options:
            if type(option) is type(value) and option == value:
                return value
        raise ParamTypeError(
            f"{_describe_value(value)} is not allowed; allowed: "
            + ", ".join(repr(o) for o in options))
    if origin in (list, tuple):
        return _coerce_sequence(base, value, base_dir)
    return _coerce_scalar(base, value, base_dir)


def _coerce_sequence(base: Any, value: Any, base_dir: Path | None) -> list:
    if not isinstance(value, (list, tuple)):
        raise ParamTypeError(f"expected {type_name(base)}, got {_describe_value(value)}")
    inner = [a for a in typing.get_args(base) if a is not Ellipsis]
    if not inner:
        return list(value)
    out = []
    for i, item in enumerate(value):
        try:
            out.append(coerce(inner[0], item, base_dir))
        except ParamTypeError as exc:
            raise ParamTypeError(f"item {i}: {exc}") from None
    return out


def _coerce_scalar(base: Any, value: Any, base_dir: Path | None) -> Any:
    if base is bool:
        if isinstance(value, bool):
            return value
    elif base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                raise ParamTypeError(
                    f"expected a finite float, got {_describe_value(value)}")
            return float(value)
    elif base is str:
        if isinstance(value, str):
            return value
    elif base is Path:
        if isinstance(value, str) and value:
            p = Path(value).expanduser()
            if not p.is_absolute() and base_dir is not None:
                p = base_dir / p
            return p.absolute() if not p.is_absolute() else p
    elif base is dict:
        if isinstance(value, dict):
            return value
    else:
        raise TypeError(f"unsupported parameter annotation {base!r}")
    raise ParamTypeError(f"expected {type_name(base)}, got {_describe_value(value)}")


def supported(ann: Any) -> bool:
    """Whether ``coerce`` understands annotation ``ann``."""
    base, _ = _split_annotated(ann)
    args = _union_args(base)
    if args is not None:
        return all(a is NoneType or supported(a) for a in args)
    origin = typing.get_origin(base)
    if origin is Literal:
        return True
    if origin in (list, tuple):
        inner = typing.get_args(base)
        return not inner or supported(inner[0])
    return base in (bool, int, float, str, Path, dict, Any)


_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$")
_ARG_LINE = re.compile(r"^(\s*)(\*{0,2}\w+)(\s*\([^)]*\))?\s*:\s*(.*)$")


def docstring_args(doc: str) -> dict[str, str]:
    """Parse a Google-style ``Args:`` section into {name: description}."""
    out: dict[str, str] = {}
    lines = inspect.cleandoc(doc or "").splitlines()
    in_args, indent, current = False, None, None
    for line in lines:
        if _ARGS_HEADER.match(line):
            in_args, indent, current = True, None, None
            continue
        if not in_args:
            continue
        if not line.strip():
            current = None
            continue
        m = _ARG_LINE.match(line)
        lead = len(line) - len(line.lstrip())
        if lead == 0:
            break  # next section
        if m and (indent is None or lead == indent):
            indent = lead
            current = m.group(2).lstrip("*")
            out[current] = m.group(4).strip()
        elif current and indent is not None and lead > indent:
            out[current] = (out[current] + " " + line.strip()).strip()
        else:
            break
    return out


#: Where a sentence ends: after . ! or ? and before whitespace and a capital (or a quote,
#: a bracket or a backtick), so "e.g. a" and "et al. 2016" do not end one; nor does
#: "He et al. (2016)" or "e.g. (...)": an abbreviation's full stop ends no sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?])(?<!\bal\.)(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bcf\.)"
                           r"\s+(?=[A-Z(\[`\"'])")


def summary_line(doc: str | None) -> str:
    """A docstring's summary: the first sentence of its first paragraph, whole (a
    sentence wrapped over several lines is joined), with reST's inline literals
    (````x````) as plain text."""
    doc = inspect.cleandoc(doc or "")
    paragraph = " ".join(doc.split("\n\n")[0].split())
    end = _SENTENCE_END.search(paragraph)
    return re.sub(r"``([^`]+)``", r"\1", paragraph[:end.start()] if end else paragraph)


def params_from_signature(func, injected: frozenset[str]) -> list[ParamSpec]:
    """Read a factory's recipe parameters from its signature.

    Parameters whose names are in ``injected`` are supplied by cifarkit and
    are not recipe parameters. Raises ``TypeError`` for a signature that
    cannot be declared (``*args``, missing or unsupported annotations).
    """
    sig = inspect.signature(func)
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:  # unresolvable string annotations
        raise TypeError(f"cannot read the annotations of {func.__qualname__}: {exc}") from exc
    docs = docstring_args(func.__doc__ or "")
    specs = []
    for p in sig.parameters.values():
        if p.name in injected:
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(
                f"{func.__qualname__}: *args/**kwargs cannot be declared as "
                "recipe parameters; name each parameter")
        if p.kind is p.POSITIONAL_ONLY:
            raise TypeError(f"{func.__qualname__}: parameter {p.name!r} is positional-only")
        ann = hints.get(p.name, REQUIRED)
        if ann is REQUIRED:
            if p.default is REQUIRED or p.default is None:
                raise TypeError(
                    f"{func.__qualname__}: parameter {p.name!r} needs a type annotation")
            ann = type(p.default)
        if not supported(ann):
            raise TypeError(
                f"{func.__qualname__}: parameter {p.name!r} has unsupported "
                f"annotation {ann!r}")
        specs.append(ParamSpec(p.name, ann, p.default, docs.get(p.name, "")))
    return specs
