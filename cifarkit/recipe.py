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
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import CifarkitError, RecipeError, allowed, did_you_mean, printable
from .params import ParamTypeError, Range, coerce
from .registry import Registry

LOSSES = ("categorical_crossentropy", "sparse_categorical_crossentropy")
METRICS = ("accuracy", "top_5_accuracy")

# Core keys: name -> (annotation, default). ``...`` marks a plugin table.
TOP_KEYS: dict[str, tuple[Any, Any]] = {
    "name": (str, None),
    "description": (str, ""),
    "seed": (Annotated[int, Range(0, 2**31 - 1)], 0),
    "extends": (str, None),
    "plugins": (list[str], []),
    "data": (dict, {}),
    "augmentation": (list, []),
    "model": (dict, None),
    "strategy": (dict, {"plugin": "one_device"}),
    "train": (dict, {}),
    "callbacks": (list, []),
}
DATA_KEYS: dict[str, tuple[Any, Any]] = {
    "dataset": (str, "cifar10"),
    "validation_split": (Annotated[float, Range(0, 1, max_inclusive=False)], 0.1),
    "batch_size": (Annotated[int, Range(1, 65536)], 64),
    "limit": (Annotated[int, Range(1)] | None, None),
    "shuffle": (bool, True),
}
TRAIN_KEYS: dict[str, tuple[Any, Any]] = {
    "epochs": (Annotated[int, Range(1, 100000)], 50),
    "optimizer": (Any, "adam"),
    "learning_rate": (Annotated[float, Range(0, 10, min_inclusive=False)], 1e-3),
    "loss": (Literal[LOSSES], "categorical_crossentropy"),  # type: ignore[valid-type]
    "label_smoothing": (Annotated[float, Range(0, 1, max_inclusive=False)], 0.0),
    "metrics": (list[Literal[METRICS]], ["accuracy"]),  # type: ignore[valid-type]
    "steps_per_epoch": (Annotated[int, Range(1)] | None, None),
    "deterministic": (bool, False),
    "mixed_precision": (Literal["float32", "mixed_float16", "mixed_bfloat16"], "float32"),
    "jit_compile": (bool | Literal["auto"], "auto"),
    "learning_rate_scaling": (Literal["none", "linear"], "none"),
    "tta": (Literal["none", "flip", "flip_translate"], "none"),
}


@dataclass(frozen=True)
class Origin:
    """Where a key's value came from: a recipe file or a ``--set`` option."""

    label: str
    base_dir: Path


@dataclass(frozen=True)
class PluginCall:
    """One use of a plugin in a recipe: kind, name and validated parameters."""

    kind: str
    plugin: str
    params: dict[str, Any]
    key: str  # where it sits in the recipe, e.g. "augmentation[1]"

    def to_toml(self) -> dict[str, Any]:
        return {"plugin": self.plugin, **_toml_values(self.params)}


@dataclass(frozen=True)
class DataConfig:
    dataset: PluginCall
    validation_split: float
    batch_size: int
    limit: int | None
    shuffle: bool


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    optimizer: PluginCall
    learning_rate: float
    loss: str
    label_smoothing: float
    metrics: tuple[str, ...]
    steps_per_epoch: int | None
    deterministic: bool = False
    mixed_precision: str = "float32"
    jit_compile: bool | str = "auto"
    learning_rate_scaling: str = "none"
    tta: str = "none"


@dataclass(frozen=True)
class Recipe:
    """A validated recipe with every plugin default filled in."""

    path: Path
    name: str
    description: str
    seed: int
    plugins: tuple[Path, ...]
    data: DataConfig
    augmentation: tuple[PluginCall, ...]
    model: PluginCall
    strategy: PluginCall
    train: TrainConfig
    callbacks: tuple[PluginCall, ...]
    overrides: tuple[str, ...] = field(default=())

    def resolved(self) -> dict[str, Any]:
        """The fully resolved recipe as a TOML-ready dict (no ``extends``)."""
        data = {
            "dataset": self.data.dataset.plugin,
            "validation_split": self.data.validation_split,
            "batch_size": self.data.batch_size,
            "limit": self.data.limit,
            "shuffle": self.data.shuffle,
            **self.data.dataset.params,
        }
        train = {f.name: getattr(self.train, f.name) for f in fields(TrainConfig)}
        train["optimizer"] = self.train.optimizer.to_toml()
        doc = {
            "name": self.name,
            "description": self.description,
            "seed": self.seed,
            "plugins": [str(p) for p in self.plugins],
            "data": _toml_values(data),
            "augmentation": [a.to_toml() for a in self.augmentation],
            "model": self.model.to_toml(),
            "strategy": self.strategy.to_toml(),
            "train": _toml_values(train),
            "callbacks": [c.to_toml() for c in self.callbacks],
        }
        return _toml_values(doc)

    def dumps(self) -> str:
        """The resolved recipe as TOML text; running it reproduces this recipe."""
        import tomli_w

        header = (f"# Fully resolved recipe written by cifarkit from {self.path}"
                  + (f" with {' '.join('--set ' + o for o in self.overrides)}" if self.overrides else "")
                  + ".\n# `cifarkit run` on this file repeats the run.\n")
        return header + tomli_w.dumps(self.resolved())


def _toml_values(d: dict[str, Any]) -> dict[str, Any]:
    """Drop unset (None) values, turn paths into strings, tuples into lists."""
    out = {}
    for k, v in d.items():
        if v is None:
            continue
        if isinstance(v, Path):
            v = str(v)
        elif isinstance(v, tuple):
            v = list(v)
        if isinstance(v, list):
            v = [str(x) if isinstance(x, Path) else x for x in v]
        out[k] = v
    return out


# -- reading and merging --------------------------------------------------------

Key = tuple  # a path into the document: ("data", "batch_size"), ("augmentation", 0)


def _key_str(key: Key) -> str:
    out = ""
    for part in key:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + printable(part)
    return out


def read_toml(path: Path) -> dict[str, Any]:
    """Parse one TOML file; every failure is a RecipeError naming the file."""
    try:
        text = path.read_bytes().decode("utf-8")
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
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: TOML syntax error: {exc}") from None


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


def builtin_recipes() -> dict[str, Path]:
    """Recipes shipped with cifarkit, by name (``default`` -> .../recipes/default.toml)."""
    from importlib import resources

    folder = resources.files("cifarkit.recipes")
    return {p.name[:-5]: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".toml")}


def _load_chain(path: Path, origins: dict[Key, Origin], seen: tuple[Path, ...] = ()) -> dict:
    path = path.absolute()
    if path in seen:
        chain = " -> ".join(str(p) for p in seen + (path,))
        raise RecipeError(f"{seen[-1]}: extends: recipes extend each other in a cycle: {chain}")
    doc = read_toml(path)
    own: dict[Key, Origin] = {}
    _record(doc, Origin(str(path), path.parent), own)
    parent_ref = doc.pop("extends", None)
    if parent_ref is None:
        origins.update(own)
        return doc
    if not isinstance(parent_ref, str) or not parent_ref:
        raise RecipeError(f"{path}: extends: expected a path to another recipe (string), "
                          f"got {parent_ref!r}")
    parent_path = (path.parent / parent_ref).expanduser()
    if not parent_path.exists() and parent_ref in builtin_recipes():
        parent_path = builtin_recipes()[parent_ref]
    if not parent_path.exists():
        raise RecipeError(f"{path}: extends: {parent_ref!r} not found (looked at {parent_path})")
    parent = _load_chain(parent_path, origins, seen + (path,))
    return merge_tables(parent, doc, origins, own)


_SET_RE = re.compile(r"^\s*([A-Za-z0-9_.\[\]-]+)\s*=(.*)$", re.S)


def parse_value(text: str) -> Any:
    """A ``--set`` value: a TOML value if it parses as one, else the raw string."""
    try:
        return tomllib.loads(f"v = {text.strip()}")["v"]
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


def apply_set(doc: dict, raw_option: str, origins: dict[Key, Origin]) -> None:
    """Apply one ``--set KEY=VALUE`` override in place.

    KEY is dotted (``train.epochs``); an array of tables is indexed by
    position (``augmentation.0.degrees`` or ``augmentation[0].degrees``) or
    by plugin name when only one entry uses it (``callbacks.early_stopping.patience``).
    """
    option = printable(raw_option)
    m = _SET_RE.match(raw_option)
    if not m:
        raise RecipeError(f"--set {option}: expected KEY=VALUE, e.g. --set train.epochs=1")
    parts = _parse_set_key(option, m.group(1))
    value = parse_value(m.group(2))
    node: Any = doc
    key: Key = ()
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
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
        key = key + (part,)
        if last:
            if part == "plugin" and isinstance(node, dict) and node.get("plugin") != value:
                for other in [k for k in node if k != "plugin"]:  # as with extends: a new
                    del node[other]                               # plugin starts afresh
                    _drop(origins, key[:-1] + (other,))
            _drop(origins, key)
            node[part] = value
            _record(value, Origin(f"--set {option}", Path.cwd()), origins, key)
        else:
            if isinstance(node, dict) and part not in node:
                node[part] = {}
            node = node[part]


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

    def check_keys(self, table: dict, schema: dict | set, key: Key, extra: str = "") -> None:
        for k in table:
            if k not in schema:
                raise self.fail(key + (k,), f"unknown key{did_you_mean(k, schema)} "
                                f"({allowed(schema)}{extra})")

    def value(self, table: dict, name: str, schema: dict, key: Key) -> Any:
        ann, default = schema[name]
        if name not in table:
            return default
        if ann is dict:
            if not isinstance(table[name], dict):
                raise self.fail(key + (name,), f"expected a table, got {type(table[name]).__name__}")
            return table[name]
        if ann is list:
            if not isinstance(table[name], list):
                raise self.fail(key + (name,), f"expected an array of tables "
                                f"([[{name}]]), got {type(table[name]).__name__}")
            return table[name]
        try:
            return coerce(ann, table[name], self.origin(key + (name,)).base_dir)
        except ParamTypeError as exc:
            raise self.fail(key + (name,), str(exc)) from None

    def plugin_call(self, kind: str, table: Any, key: Key, core: dict | None = None,
                    name_key: str = "plugin") -> PluginCall:
        if isinstance(table, str):
            table = {name_key: table}
        if not isinstance(table, dict):
            raise self.fail(key, f"expected a table with {name_key} = \"<{kind} plugin>\", "
                            f"got {type(table).__name__}")
        core = core or {}
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
            if k == name_key or k in core:
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
                if spec.required:
                    raise self.fail(key, f"{kind} plugin {name!r} needs parameter "
                                    f"{spec.name!r} ({spec.type_name})")
                params[spec.name] = copy.deepcopy(spec.default)
        return PluginCall(kind, name, params, _key_str(key))

    def plugin_list(self, kind: str, items: list, key: Key) -> tuple[PluginCall, ...]:
        return tuple(self.plugin_call(kind, item, key + (i,)) for i, item in enumerate(items))


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


def validate(doc: dict, path: Path, origins: dict[Key, Origin], registry: Registry,
             overrides: tuple[str, ...] = ()) -> Recipe:
    """Check a merged recipe document and build the typed :class:`Recipe`."""
    v = _Validator(path, origins, registry)
    v.check_keys(doc, TOP_KEYS, ())
    get = lambda name: v.value(doc, name, TOP_KEYS, ())  # noqa: E731
    plugin_files = tuple(Path(p) for p in get("plugins"))
    for i, rel in enumerate(plugin_files):
        origin = v.origin(("plugins", i))
        file = rel if rel.is_absolute() else origin.base_dir / rel
        try:
            registry.load_file(file)
        except CifarkitError as exc:
            raise v.fail(("plugins", i), str(exc)) from None
    plugin_files = tuple((p if p.is_absolute() else v.origin(("plugins", i)).base_dir / p).absolute()
                         for i, p in enumerate(plugin_files))

    data = get("data")
    dataset = v.value(data, "dataset", DATA_KEYS, ("data",))
    dataset_call = v.plugin_call("dataset", {**data, "dataset": dataset}, ("data",),
                                 core=DATA_KEYS, name_key="dataset")
    data_cfg = DataConfig(
        dataset=dataset_call,
        validation_split=v.value(data, "validation_split", DATA_KEYS, ("data",)),
        batch_size=v.value(data, "batch_size", DATA_KEYS, ("data",)),
        limit=v.value(data, "limit", DATA_KEYS, ("data",)),
        shuffle=v.value(data, "shuffle", DATA_KEYS, ("data",)),
    )
    train = get("train")
    v.check_keys(train, TRAIN_KEYS, ("train",))
    tget = lambda name: v.value(train, name, TRAIN_KEYS, ("train",))  # noqa: E731
    loss = tget("loss")
    smoothing = tget("label_smoothing")
    if smoothing and loss != "categorical_crossentropy":
        raise v.fail(("train", "label_smoothing"),
                     "label smoothing needs loss = 'categorical_crossentropy'")
    train_cfg = TrainConfig(
        epochs=tget("epochs"),
        optimizer=v.plugin_call("optimizer", tget("optimizer"), ("train", "optimizer")),
        learning_rate=tget("learning_rate"),
        loss=loss,
        label_smoothing=smoothing,
        metrics=tuple(dict.fromkeys(tget("metrics"))),
        steps_per_epoch=tget("steps_per_epoch"),
        deterministic=tget("deterministic"),
        mixed_precision=tget("mixed_precision"),
        jit_compile=tget("jit_compile"),
        learning_rate_scaling=tget("learning_rate_scaling"),
        tta=tget("tta"),
    )
    if get("model") is None:
        raise v.fail((), f"missing [model] table with plugin = \"...\" "
                     f"({allowed(registry.names('model'))})")
    callbacks = v.plugin_list("callback", get("callbacks"), ("callbacks",))
    _check_monitors(v, callbacks, train_cfg.metrics, data_cfg.validation_split)
    name = get("name") or path.stem
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name):
        raise v.fail(("name",), f"{name!r} is not usable as a run-directory name "
                     "(allowed: letters, digits, '.', '_', '-'; at most 100 characters)")
    return Recipe(
        path=path,
        name=name,
        description=get("description"),
        seed=get("seed"),
        plugins=plugin_files,
        data=data_cfg,
        augmentation=v.plugin_list("augmentation", get("augmentation"), ("augmentation",)),
        model=v.plugin_call("model", get("model"), ("model",)),
        strategy=v.plugin_call("strategy", get("strategy"), ("strategy",)),
        train=train_cfg,
        callbacks=callbacks,
        overrides=overrides,
    )


def _entries(n: int) -> str:
    return f"{n} entry" if n == 1 else f"{n} entries"


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                registry: Registry | None = None) -> Recipe:
    """Read, merge, override and validate a recipe. Raises only CifarkitError."""
    from .registry import load_registry

    path = Path(path).expanduser().absolute()
    origins: dict[Key, Origin] = {}
    doc = _load_chain(path, origins)
    for option in overrides:
        apply_set(doc, option, origins)
    if registry is None:
        registry = load_registry()
    return validate(doc, path, origins, registry, tuple(overrides))
