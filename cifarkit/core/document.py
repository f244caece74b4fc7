"""A recipe as a TOML document, before validation: read (bounded in size and nesting),
merged over its parent (extends), and overridden by --set KEY=VALUE, with the
origin (file or option) of every key kept for error messages."""

from __future__ import annotations

import stat
import re
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from cifarkit.errors import RecipeError, printable
from cifarkit.core.schema import Origin

Key = tuple  # a path into the document: ("data", "batch_size"), ("augmentation", 0)


def _key_str(key: Key) -> str:
    out = ""
    for part in key:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + printable(part)
    return out


#: The largest recipe file cifarkit reads, and the deepest nesting of tables
#: and arrays it accepts (a recipe needs 4 levels; anything near these is hostile).
MAX_RECIPE_BYTES = 1_000_000
MAX_DEPTH = 32


def _depth(value: Any) -> int:
    """Nesting depth of a TOML value (iterative: no recursion to exhaust)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _loads(text: str, where: str) -> dict[str, Any]:
    """``tomllib.loads`` with nesting bounded (one line naming ``where``); syntax errors
    stay ``TOMLDecodeError`` for the caller to word."""
    try:
        doc = tomllib.loads(text)
    except RecursionError:
        doc = None
    if doc is None or _depth(doc) > MAX_DEPTH:
        raise RecipeError(f"{where}: tables or arrays nested more than {MAX_DEPTH} levels deep")
    return doc


def parse_toml(text: str, where: str) -> dict[str, Any]:
    """TOML text to a dict; too deep a nesting, or a syntax error, is one line naming ``where``."""
    try:
        return _loads(text, where)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{where}: TOML syntax error: {exc}") from None


def read_toml(path: Path) -> dict[str, Any]:
    """Parse one TOML file; every failure is a RecipeError naming the file.

    Only regular files of at most :data:`MAX_RECIPE_BYTES` are read (a named
    pipe or a device would hang or exhaust memory).
    """
    try:
        st = path.stat()
        if stat.S_ISREG(st.st_mode) and st.st_size > MAX_RECIPE_BYTES:
            raise RecipeError(f"{path}: {st.st_size:,} bytes is too large for a recipe "
                              f"(at most {MAX_RECIPE_BYTES:,})")
        if not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
            raise RecipeError(f"{path}: not a regular file (a recipe is a .toml file)")
        with path.open("rb") as f:
            text = f.read(MAX_RECIPE_BYTES + 1).decode("utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
    except IsADirectoryError:
        raise RecipeError(f"{path}: is a directory, not a recipe file (expected a .toml file)") from None
    except PermissionError:
        raise RecipeError(f"{path}: permission denied") from None
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_toml(text, str(path))


def _record(doc: Any, origin: Origin, origins: dict[Key, Origin], prefix: Key = ()) -> None:
    origins[prefix] = origin
    if isinstance(doc, dict):
        for k, v in doc.items():
            _record(v, origin, origins, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            _record(v, origin, origins, prefix + (i,))


def _drop(origins: dict[Key, Origin], prefix: Key) -> None:
    for key in [k for k in origins if k[: len(prefix)] == prefix]:
        del origins[key]


def merge_tables(base: dict, over: dict, origins: dict[Key, Origin] | None = None,
                 over_origins: dict[Key, Origin] | None = None, prefix: Key = ()) -> dict:
    """``over`` on top of ``base`` with the ``extends`` rules; records origins if given.

    Tables merge key by key; arrays and other values are replaced; a plugin
    table whose ``plugin`` changes is replaced whole.
    """
    out = dict(base)
    for k, v in over.items():
        key = prefix + (k,)
        old = out.get(k)
        same_plugin = not (isinstance(old, dict) and isinstance(v, dict)
                           and "plugin" in v and v.get("plugin") != old.get("plugin"))
        if isinstance(old, dict) and isinstance(v, dict) and same_plugin:
            out[k] = merge_tables(old, v, origins, over_origins, key)
            if origins is not None and over_origins is not None:
                origins.setdefault(key, over_origins[key])
        else:
            out[k] = v
            if origins is not None and over_origins is not None:
                _drop(origins, key)
                origins.update({kk: o for kk, o in over_origins.items() if kk[: len(key)] == key})
    return out

_SET_RE = re.compile(r"^\s*([A-Za-z0-9_.\[\]-]+)\s*(\+?)=(.*)$", re.S)
_REMOVE_RE = re.compile(r"^\s*~\s*([A-Za-z0-9_.\[\]-]+)\s*$")


def parse_value(text: str, where: str | None = None) -> Any:
    """A ``--set`` value: a TOML value if it parses as one, else the raw string."""
    try:
        return _loads(f"v = {text.strip()}", where or f"--set {printable(text)[:60]}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _parse_set_key(option: str, key_text: str) -> list[str | int]:
    parts: list[str | int] = []
    for raw in re.split(r"\.|\[", key_text):
        raw = raw.rstrip("]")
        if raw == "":
            raise RecipeError(f"--set {option}: malformed key {key_text!r}")
        parts.append(int(raw) if raw.isdigit() else raw)
    return parts


def _set_origin(option: str) -> Origin:
    """Where a key set by ``--set OPTION`` came from (its paths are relative to here)."""
    return Origin(f"--set {option}", Path.cwd())


def _position(node: Any, part: str | int, key: Key, option: str) -> str | int:
    """``part`` as an index into ``node``: a plugin name names the one array entry that
    uses it; a position must be in the array; a table takes names only."""
    if isinstance(node, list):
        if isinstance(part, str):
            matches = [j for j, item in enumerate(node)
                       if isinstance(item, dict) and item.get("plugin") == part]
            if len(matches) != 1:
                raise RecipeError(
                    f"--set {option}: {_key_str(key)} has {_entries(len(matches))} using "
                    f"plugin {part!r}; use a position instead, e.g. {_key_str(key)}.0")
            part = matches[0]
        if not 0 <= part < len(node):
            raise RecipeError(f"--set {option}: {_key_str(key)} has {_entries(len(node))}, "
                              f"no position {part}")
    elif not isinstance(node, dict):
        raise RecipeError(f"--set {option}: {_key_str(key)} is not a table")
    elif isinstance(part, int):
        raise RecipeError(f"--set {option}: {_key_str(key) or 'the recipe'} is not an array")
    return part


def _parent(doc: dict, parts: list, option: str, origins: dict[Key, Origin],
            create: bool) -> tuple[Any, Key, str | int]:
    """The node that holds the last part of ``parts``, its key, and that part resolved;
    with ``create``, missing tables on the way are made (named by the option)."""
    node: Any = doc
    key: Key = ()
    for part in parts[:-1]:
        part = _position(node, part, key, option)
        key = key + (part,)
        if isinstance(node, dict) and part not in node:
            if not create:
                raise RecipeError(f"--set {option}: {_key_str(key)} is not in the recipe; "
                                  "nothing to remove")
            node[part] = {}  # made by this option: errors about it name the option
            origins[key] = _set_origin(option)
        node = node[part]
    return node, key, _position(node, parts[-1], key, option)


def _remove(doc: dict, option: str, key_text: str, origins: dict[Key, Origin]) -> None:
    """``~KEY``: a table's key, or an array's entry (later entries move up one)."""
    node, key, last = _parent(doc, _parse_set_key(option, key_text), option, origins, False)
    if isinstance(node, dict) and last not in node:
        raise RecipeError(f"--set {option}: {_key_str(key + (last,))} is not in the recipe; "
                          "nothing to remove")
    del node[last]
    _drop(origins, key + (last,))
    if isinstance(node, list):  # the entries after it keep their origins, one place up
        n = len(key)
        moved = {k: o for k, o in origins.items()
                 if k[:n] == key and len(k) > n and k[n] > last}
        for k in moved:
            del origins[k]
        origins.update({k[:n] + (k[n] - 1,) + k[n + 1:]: o for k, o in moved.items()})


def _append(node: Any, last: str | int, key: Key, value: Any, option: str,
            origins: dict[Key, Origin]) -> None:
    """``KEY+=VALUE``: VALUE (an array: each of its entries) after the array's last entry."""
    if isinstance(node, dict) and last not in node:
        node[last] = []
    array = node[last]
    if not isinstance(array, list):
        raise RecipeError(f"--set {option}: {_key_str(key + (last,))} is not an array; "
                          "+= appends to an array (use = to replace a value)")
    for item in value if isinstance(value, list) else [value]:
        array.append(item)
        _record(item, _set_origin(option), origins,
                key + (last, len(array) - 1))


def apply_set(doc: dict, raw_option: str, origins: dict[Key, Origin]) -> None:
    """Apply one ``--set`` override in place: ``KEY=VALUE`` sets a key, ``KEY+=VALUE``
    appends to an array, ``~KEY`` removes a key or an array's entry.

    KEY is dotted (``train.epochs``); an array of tables is indexed by
    position (``augmentation.0.degrees`` or ``augmentation[0].degrees``) or
    by plugin name when only one entry uses it (``callbacks.early_stopping.patience``).
    """
    option = printable(raw_option)
    if not raw_option.isprintable():  # a newline or an escape would be written into recipe.toml
        bad = next(c for c in raw_option if not c.isprintable())
        raise RecipeError(f"--set {option}: holds the control character {bad!r}; recipe "
                          "values are one line of printable text (write such a value in a "
                          "recipe file, as a TOML string with escapes)")
    removal = _REMOVE_RE.match(raw_option)
    if removal:
        return _remove(doc, option, removal.group(1), origins)
    m = _SET_RE.match(raw_option)
    if not m:
        raise RecipeError(f"--set {option}: expected KEY=VALUE, KEY+=VALUE or ~KEY, "
                          "e.g. --set train.epochs=1")
    parts = _parse_set_key(option, m.group(1))
    value = parse_value(m.group(3), f"--set {option[:60]}")
    if m.group(2):
        node, key, last = _parent(doc, parts, option, origins, True)
        return _append(node, last, key, value, option, origins)
    node, key, part = _parent(doc, parts, option, origins, True)
    key = key + (part,)
    if part == "plugin" and isinstance(node, dict) and node.get("plugin") != value:
        for other in [k for k in node if k != "plugin"]:  # as with extends: a new
            del node[other]                               # plugin starts afresh
            _drop(origins, key[:-1] + (other,))
    _drop(origins, key)
    node[part] = value
    _record(value, _set_origin(option), origins, key)


def _entries(n: int) -> str:
    return f"{n} entry" if n == 1 else f"{n} entries"
