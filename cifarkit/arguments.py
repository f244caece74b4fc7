"""What the Python API is given, checked once: a wrong type is one
:class:`cifarkit.CifarkitError` line naming the argument, and a string where a list
belongs is refused, not read a character at a time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cifarkit.errors import CifarkitError


def path(name: str, value: Any) -> Path:
    """``value`` as a path, or one line naming the argument."""
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes) and str(value):
        return Path(value)
    raise CifarkitError(f"{name}: expected a path (str or os.PathLike), got "
                        f"{type(value).__name__} {value!r}"[:300])


def strings(name: str, value: Any, paths: bool = False) -> list:
    """A list of strings (``paths``: or os.PathLike) from a list or tuple; a single string
    is refused, not read a character at a time."""
    what = "paths" if paths else "strings"
    if isinstance(value, (str, bytes, os.PathLike)):
        raise CifarkitError(f"{name}: expected a list of {what}, got a single "
                            f"{type(value).__name__}: pass [{str(value)!r}]"[:300])
    if not isinstance(value, (list, tuple)):
        raise CifarkitError(f"{name}: expected a list of {what}, got {type(value).__name__}")
    for i, item in enumerate(value):
        if not (isinstance(item, str) or (paths and isinstance(item, os.PathLike))):
            raise CifarkitError(f"{name}[{i}]: expected a {what[:-1]}, got "
                                f"{type(item).__name__} {item!r}"[:300])
    return list(value)


def paths(name: str, value: Any) -> list[Path]:
    return [Path(p) for p in strings(name, value, paths=True)]


def choice(name: str, value: Any, kind: type, optional: bool = True) -> Any:
    if (value is None and optional) or (isinstance(value, kind) and not isinstance(value, bool)
                                        or kind is bool and isinstance(value, bool)):
        return value
    raise CifarkitError(f"{name}: expected {kind.__name__}"
                        f"{' or None' if optional else ''}, got {type(value).__name__}")
