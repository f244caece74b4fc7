"""Recipes: TOML files validated into a typed :class:`Recipe`.

Loading order: read the file, then its ``extends`` chain (each parent's
tables are overridden key by key by the child; arrays such as
``[[augmentation]]`` are replaced whole; a plugin table whose ``plugin``
changes is replaced whole), then ``--set KEY=VALUE`` overrides, then
validation against the core schema and every plugin's declared parameters.
Every problem is a :class:`RecipeError` or :class:`PluginError` naming the
file (or ``--set``) that set the offending key. Nothing here imports
TensorFlow.
"""

from __future__ import annotations

import copy
import os
import dataclasses
import re
import sys
import typing
from dataclasses import MISSING, is_dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover
    pass

from cifarkit.errors import (CifarkitError, RecipeError, allowed, did_you_mean, first_line,
                             printable)
from cifarkit.core.document import Key, _key_str, _record, apply_set, merge_tables, read_toml
from cifarkit.core.params import ParamTypeError, coerce
from cifarkit.core.registry import Registry
from cifarkit.core.schema import (LOSSES, METRICS, DataConfig, Origin, PluginCall, PluginRef, Recipe,  # noqa: F401
                     TrainConfig, _base, _plugin_ref, _schema, resume_editable)

# -- reading and merging --------------------------------------------------------


def builtin_recipes() -> dict[str, Path]:
    """Recipes shipped with cifarkit, by name (``default`` -> .../recipes/default.toml)."""
    from importlib import resources

    folder = resources.files("cifarkit.recipes")
    return {p.name[:-5]: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".toml")}


def locate_recipe(ref: str, base_dir: Path | None = None) -> Path:
    """Where a recipe reference points, for the command line and ``extends`` alike.

    ``ref`` is a path (relative to ``base_dir``, default the current
    directory); when no such file exists and ``ref`` is a bare name of a
    recipe shipped with cifarkit (``default`` or ``default.toml``), that one. On the
    command line, a run directory stands for its ``recipe.toml`` (the resolved recipe
    that repeats the run).
    """
    path = (base_dir / ref if base_dir is not None else Path(ref)).expanduser()
    if base_dir is None and path.is_dir() and (path / "recipe.toml").is_file():
        return path / "recipe.toml"
    if os.path.lexists(path) or "/" in ref or "\\" in ref:
        return path
    shipped = builtin_recipes()
    name = ref.removesuffix(".toml")
    if name in shipped or base_dir is not None:  # (extends: its own error names the file)
        return shipped.get(name, path)
    raise RecipeError(f"{printable(ref)}: recipe file not found, and cifarkit ships no recipe "
                      f"of that name{did_you_mean(name, shipped)} (shipped: "
                      f"{', '.join(sorted(shipped))})")


#: The longest ``extends`` chain cifarkit follows (a real one has 2 or 3 links).
MAX_EXTENDS = 32


def _resolved_path(path: Path, where: str) -> Path:
    """``path`` with every symlink and ``..`` resolved; a symlink loop is one line."""
    try:
        return path.resolve(strict=False)
    except (RuntimeError, OSError) as exc:  # "Symlink loop" (RuntimeError before 3.13)
        raise RecipeError(f"{where}: {path} is a symlink loop ({first_line(exc)})") from None


def _load_chain(path: Path, origins: dict[Key, Origin], seen: tuple[Path, ...] = (),
                seen_real: tuple[Path, ...] = (), document: dict | None = None) -> dict:
    """``path`` (or ``document``, its content already read) merged over its ``extends``
    chain; ``seen`` are the recipes that extend it (as written, for messages) and
    ``seen_real`` the same resolved."""
    path = path.absolute()
    where = str(seen[-1]) + ": extends" if seen else str(path)
    real = _resolved_path(path, where)
    if real in seen_real:  # by resolved path: `..`, symlinks
        chain = " -> ".join(str(p) for p in seen + (path,))
        raise RecipeError(f"{seen[-1]}: extends: recipes extend each other in a cycle: {chain}")
    if len(seen) >= MAX_EXTENDS:
        raise RecipeError(f"{seen[-1]}: extends: a chain of more than {MAX_EXTENDS} recipes "
                          f"(from {seen[0]}); real ones have a few")
    doc = read_toml(path) if document is None else document
    own: dict[Key, Origin] = {}
    _record(doc, Origin(str(path), path.parent), own)
    parent_ref = doc.pop("extends", None)
    if parent_ref is None:
        origins.update(own)
        return doc
    if not isinstance(parent_ref, str) or not parent_ref:
        raise RecipeError(f"{path}: extends: expected a path to another recipe (string), "
                          f"got {parent_ref!r}")
    parent_path = locate_recipe(parent_ref, path.parent)
    if parent_path.is_symlink():
        _resolved_path(parent_path, f"{path}: extends")  # a loop: said so, not "not found"
    if not parent_path.exists():
        raise RecipeError(f"{path}: extends: {parent_ref!r} not found (looked at {parent_path})")
    parent = _load_chain(parent_path, origins, seen + (path,), seen_real + (real,))
    return merge_tables(parent, doc, origins, own)


# -- validation -----------------------------------------------------------------

class _Validator:
    def __init__(self, path: Path, origins: dict[Key, Origin], registry: Registry):
        self.path = path
        self.origins = origins
        self.registry = registry

    def origin(self, key: Key) -> Origin:
        for n in range(len(key), -1, -1):
            if key[:n] in self.origins:
                return self.origins[key[:n]]
        return Origin(str(self.path), self.path.parent)

    def fail(self, key: Key, message: str) -> RecipeError:
        where = f"{_key_str(key)}: " if key else ""
        return RecipeError(f"{self.origin(key).label}: {where}{message}")

    def check_keys(self, table: dict, schema: Any, key: Key) -> None:
        for k in table:
            if k not in schema:
                raise self.fail(key + (k,), f"unknown key{did_you_mean(k, schema)} "
                                f"({allowed(schema)})")

    def table(self, cls: type, table: dict, key: Key, **given: Any) -> Any:
        """Read one schema dataclass from its TOML table (``given``: non-key fields)."""
        schema = _schema(cls)
        inline = [n for n, (ann, _) in schema.items() if getattr(_plugin_ref(ann), "inline", False)]
        if not inline:  # with an inline plugin, its parameters are the other keys
            self.check_keys(table, schema, key)
        values = dict(given)
        for name, (ann, f) in schema.items():
            if name in table:
                raw = table[name]
            elif f.default is not MISSING:
                raw = f.default
            elif f.default_factory is not MISSING:
                raw = f.default_factory()
            else:
                ref = _plugin_ref(ann)
                what = f"[{name}] table with plugin = \"...\" ({allowed(self.registry.names(ref.kind))})" \
                    if ref else f"key {name!r}"
                raise self.fail(key, f"missing {what}")
            if name not in table and _plugin_ref(ann) is None and not is_dataclass(_base(ann)):
                values[name] = raw  # a plain default: already its declared type
            elif name in inline:
                raw = {name: raw, **{k: v for k, v in table.items() if k not in schema}}
                values[name] = self.plugin_call(_plugin_ref(ann).kind, raw, key, name_key=name,
                                                core=schema)
            else:
                values[name] = self.value(ann, raw, key + (name,))
        return cls(**values)

    def value(self, ann: Any, raw: Any, key: Key) -> Any:
        ref, base = _plugin_ref(ann), _base(ann)
        if ref is not None and typing.get_origin(base) is tuple:
            if not isinstance(raw, (list, tuple)):
                raise self.fail(key, f"expected an array of tables ([[{key[-1]}]]), "
                                f"got {type(raw).__name__}")
            return tuple(self.plugin_call(ref.kind, item, key + (i,)) for i, item in enumerate(raw))
        if ref is not None:
            return self.plugin_call(ref.kind, raw, key)
        if is_dataclass(base):
            if not isinstance(raw, dict):
                raise self.fail(key, f"expected a table, got {type(raw).__name__}")
            return self.table(base, raw, key)
        try:
            out = coerce(ann, raw, self.origin(key).base_dir)
        except ParamTypeError as exc:
            raise self.fail(key, str(exc)) from None
        return tuple(dict.fromkeys(out)) if typing.get_origin(base) is tuple else out

    def plugin_call(self, kind: str, table: Any, key: Key, core: Any = (),
                    name_key: str = "plugin") -> PluginCall:
        if isinstance(table, str):
            table = {name_key: table}
        if not isinstance(table, dict):
            raise self.fail(key, f"expected a table with {name_key} = \"<{kind} plugin>\", "
                            f"got {type(table).__name__}")
        name = table.get(name_key)
        if name is None:
            raise self.fail(key, f"missing {name_key!r} ({allowed(self.registry.names(kind))})")
        if not isinstance(name, str):
            raise self.fail(key + (name_key,), f"expected a {kind} plugin name (string), "
                            f"got {type(name).__name__}")
        try:
            info = self.registry.get(kind, name)
        except CifarkitError as exc:
            raise self.fail(key + (name_key,), str(exc)) from None
        params: dict[str, Any] = {}
        declared = {p.name for p in info.params}
        for k, v in table.items():
            if k == name_key:
                continue
            spec = info.param(k)
            if spec is None:
                hint = did_you_mean(k, declared | set(core))
                raise self.fail(key + (k,), f"unknown parameter for {kind} plugin {name!r}"
                                f"{hint} ({allowed(declared | set(core) - {name_key})})")
            try:
                params[k] = coerce(spec.annotation, v, self.origin(key + (k,)).base_dir)
            except ParamTypeError as exc:
                raise self.fail(key + (k,), f"{exc} ({kind} plugin {name!r})") from None
        for spec in info.params:
            if spec.name not in params:
                if spec.required:  # blame whoever chose this plugin
                    raise self.fail(key + (name_key,), f"{kind} plugin {name!r} needs parameter "
                                    f"{spec.name!r} ({spec.type_name})")
                params[spec.name] = copy.deepcopy(spec.default)
        labels = [self.origin(key + (k,)).label for k in (name_key, *table)]
        return PluginCall(kind, name, params, _key_str(key), " + ".join(dict.fromkeys(labels)))


def _check_monitors(v: _Validator, callbacks: tuple[PluginCall, ...], metrics: tuple[str, ...],
                    validation_split: float) -> None:
    """A callback's ``monitor`` must name a metric the run logs (else it silently never acts)."""
    logged = ["loss", *metrics]
    for i, call in enumerate(callbacks):
        monitor = call.params.get("monitor")
        if not isinstance(monitor, str):
            continue
        key = ("callbacks", i, "monitor")
        if monitor.startswith("val_") and validation_split == 0:
            raise v.fail(key, f"{monitor!r} needs validation data, but data.validation_split is 0 "
                         f"(monitor one of: {', '.join(logged)})")
        choices = logged + ([f"val_{m}" for m in logged] if validation_split > 0 else [])
        if monitor not in choices:
            raise v.fail(key, f"{monitor!r} is not a metric this run logs{did_you_mean(monitor, choices)} "
                         f"(allowed: {', '.join(choices)})")


def _check_controls(v: _Validator, callbacks: tuple[PluginCall, ...], registry: Registry) -> None:
    """Two callback plugins that control the same thing (``register(..., controls=...)``:
    the learning rate, say) would fight over it: refused."""
    claimed: dict[str, str] = {}
    for i, call in enumerate(callbacks):
        for what in registry.get("callback", call.plugin).controls:
            first = claimed.setdefault(what, call.plugin)
            if first != call.plugin:
                raise v.fail(("callbacks", i), f"{first} and {call.plugin} both set the "
                             f"{what.replace('_', ' ')}; keep one of them")


def validate(doc: dict, path: Path, origins: dict[Key, Origin], registry: Registry,
             overrides: tuple[str, ...] = (), load_plugins: bool = True) -> Recipe:
    """Check a merged recipe document and build the typed :class:`Recipe`."""
    v = _Validator(path, origins, registry)
    v.check_keys(doc, _schema(Recipe), ())
    # Local plugin files first: the plugin tables below may name their plugins.
    plugin_files = v.value(_schema(Recipe)["plugins"][0], doc.get("plugins", []), ("plugins",))
    for i, file in enumerate(plugin_files if load_plugins else ()):
        try:
            registry.load_file(file)
        except CifarkitError as exc:
            raise v.fail(("plugins", i), str(exc)) from None
    recipe = v.table(Recipe, doc, (), path=path, overrides=overrides)
    if recipe.train.label_smoothing and not recipe.train.one_hot:
        raise v.fail(("train", "label_smoothing"),
                     "label smoothing needs loss = 'categorical_crossentropy'")
    _check_monitors(v, recipe.callbacks, recipe.train.metrics, recipe.data.validation_split)
    _check_controls(v, recipe.callbacks, registry)
    name = recipe.name or path.stem
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name):
        raise v.fail(("name",), f"{name!r} is not usable as a run-directory name "
                     "(allowed: letters, digits, '.', '_', '-'; at most 100 characters)")
    return dataclasses.replace(recipe, name=name)


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                registry: Registry | None = None, trusted: bool = True,
                document: dict | None = None) -> Recipe:
    """Read, merge, override and validate a recipe. Raises only CifarkitError.

    ``trusted=False`` (a run directory someone else made, see
    :mod:`cifarkit.runs.trust`): the recipe may not ``extends`` another file, and
    its ``plugins`` files are not imported unless already loaded (``--plugin
    FILE``); either is one line saying what it would have read or run.
    ``document``: ``path``'s content, already read and checked (a run folder's
    snapshot): ``path`` itself is not read again, only named.
    """
    from cifarkit.core.registry import load_registry

    path = Path(path).expanduser().absolute()
    if document is not None:
        document = copy.deepcopy(document)
    if not trusted:
        _check_foreign(path, registry, document)
    origins: dict[Key, Origin] = {}
    doc = _load_chain(path, origins, document=document)
    for option in overrides:
        apply_set(doc, option, origins)
    if registry is None:
        registry = load_registry()
    return validate(doc, path, origins, registry, tuple(overrides))


def recipe_from_document(doc: dict, path: Path, registry: Registry,
                         load_plugins: bool = True) -> Recipe:
    """A recipe from an already-parsed document (a checkpoint keeps one), validated and
    with today's defaults filled in; ``path`` is what errors name. ``load_plugins=False``:
    the document's ``plugins`` files are not imported (a plugin only they register is
    then an unknown plugin, a :class:`CifarkitError`)."""
    origins: dict[Key, Origin] = {}
    _record(doc, Origin(str(path), path.parent), origins)
    return validate(copy.deepcopy(doc), path, origins, registry, load_plugins=load_plugins)


def plugin_call(kind: str, table: dict, registry: Registry, where: str) -> PluginCall:
    """One plugin's table (``{"plugin": NAME, **params}``) validated as a recipe's would
    be: unknown names and parameters, types and ranges are one line naming ``where``."""
    path = Path(where)
    return _Validator(path, {(): Origin(where, Path.cwd())}, registry).plugin_call(
        kind, table, (kind,))


FOREIGN_HINT = ("this run directory was not made by your cifarkit (or a file in it was "
                "edited since)")


def _check_foreign(path: Path, registry: Registry | None, doc: dict | None = None) -> None:
    """Refuse what a foreign recipe would read or run: ``extends`` and unloaded plugin files."""
    doc = read_toml(path) if doc is None else doc
    if "extends" in doc:
        raise RecipeError(f"{path}: extends: {FOREIGN_HINT}, and it would read "
                          f"{printable(doc['extends'])!r}; pass --trust-run if you trust it")
    files = doc.get("plugins", [])
    if not isinstance(files, list):
        return  # validation words the error
    pending = []
    for ref in files:
        if not isinstance(ref, str):
            continue
        file = (path.parent / ref).expanduser().absolute()
        if registry is None or not registry.pm.has_plugin(f"file:{file}"):
            pending.append(str(file))
    if pending:
        raise RecipeError(f"{path}: plugins: {FOREIGN_HINT}, and it would run the plugin "
                          f"file(s) {', '.join(pending)}; pass --plugin FILE for each one you "
                          "trust, or --trust-run")
