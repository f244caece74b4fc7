"""The recipe's schema, declared once: every key, its type, its default, and whether a
resume may change it.

Each field of these dataclasses is a recipe key: its annotation is checked by
:func:`cifarkit.core.params.coerce` (the same validator that reads plugin
signatures), ``PluginRef`` fields name plugins, nested dataclasses are tables.
Defaults are TOML values, validated like the recipe's own. Field metadata:
``{"key": False}``: not a recipe key; ``{"resume": True}``: a resume honours
an edit of it (everything else is fixed once a run has started: weights,
optimizer state and data order come from the checkpoint).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from cifarkit.backends import BACKENDS
from cifarkit.core.params import Range, plain

RESUMABLE = {"resume": True}

LOSSES = ("categorical_crossentropy", "sparse_categorical_crossentropy")
METRICS = ("accuracy", "top_5_accuracy")


@dataclass(frozen=True)
class Origin:
    """Where a key's value came from: a recipe file or a ``--set`` option."""

    label: str
    base_dir: Path


@dataclass(frozen=True)
class PluginRef:
    """Marks a recipe key whose value names a plugin: ``Annotated[PluginCall, PluginRef(kind)]``.

    ``inline``: the plugin's parameters share the enclosing table (``[data]``
    holds ``dataset = "..."`` beside the dataset's parameters), and the
    plugin name sits under the field's own name instead of ``plugin``.
    """

    kind: str
    inline: bool = False


@dataclass(frozen=True)
class PluginCall:
    """One use of a plugin in a recipe: kind, name and validated parameters."""

    kind: str
    plugin: str
    params: dict[str, Any]
    key: str  # where it sits in the recipe, e.g. "augmentation[1]"
    origin: str = ""  # the recipe file (and any --set) that chose it and its parameters

    def to_toml(self) -> dict[str, Any]:
        return {"plugin": self.plugin, **plain(self.params, drop_none=True)}


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    dataset: Annotated[PluginCall, PluginRef("dataset", inline=True)] = "cifar10"  # type: ignore[assignment]
    validation_split: Annotated[float, Range(0, 1, max_inclusive=False)] = 0.1
    batch_size: Annotated[int, Range(1, 65536)] = 64
    limit: Annotated[int, Range(1)] | None = None
    shuffle: bool = True


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    epochs: Annotated[int, Range(1, 100000)] = field(default=50, metadata=RESUMABLE)
    optimizer: Annotated[PluginCall, PluginRef("optimizer")] = "adam"  # type: ignore[assignment]
    learning_rate: Annotated[float, Range(0, 10, min_inclusive=False)] = 1e-3
    loss: Literal[LOSSES] = "categorical_crossentropy"  # type: ignore[valid-type]
    label_smoothing: Annotated[float, Range(0, 1, max_inclusive=False)] = 0.0
    metrics: tuple[Literal[METRICS], ...] = ("accuracy",)  # type: ignore[valid-type]
    steps_per_epoch: Annotated[int, Range(1)] | None = None
    # Training steps per call into the backend (Keras's steps_per_execution): callbacks
    # and progress see every N-th step, which saves per-step framework overhead.
    # "auto": 1 on TensorFlow and on a CPU; on a JAX accelerator, chunks of up to 32.
    steps_per_execution: Annotated[int, Range(1, 10000)] | Literal["auto"] = "auto"
    deterministic: bool = False
    mixed_precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = "float32"
    jit_compile: bool | Literal["auto"] = "auto"
    learning_rate_scaling: Literal["none", "linear"] = "none"
    tta: Literal["none", "flip", "flip_translate"] = "none"
    # BatchNorm statistics recomputed over training batches after training, before the
    # test split (cifarkit.runs.precise_bn): "auto" where the moving averages have not
    # settled (a short run), "on", "off".
    precise_bn: Literal["auto", "on", "off"] = "auto"
    # Unset: the KERAS_BACKEND environment variable, else tensorflow. A run
    # directory's recipe.toml names the backend the run used.
    backend: Literal[BACKENDS] | None = None
    # Where compiled programs are kept between runs: "auto" (the user's cache folder),
    # "off", or a folder. Only the JAX backend has such a cache (docs/backends.md).
    compilation_cache: str = field(default="auto", metadata=RESUMABLE)
    # Weights to start from: a run directory (its model.keras, else its latest
    # checkpoint), a .keras file or a .weights.h5 file. Layers are matched by name
    # and shape; the others keep their fresh initial weights.
    init_from: Path | None = None
    # Layer names or fnmatch patterns ("block1_*") whose weights are not trained.
    freeze: tuple[str, ...] = ()
    # Keep an exponential moving average of the trained weights (Keras's optimizer
    # use_ema) with this momentum; at every epoch's end the weights become the
    # average, so validation, checkpoints, model.keras and the test all use it.
    ema_momentum: Annotated[float, Range(0, 1, min_inclusive=False, max_inclusive=False)] \
        | None = None

    @property
    def one_hot(self) -> bool:
        """Whether labels are one-hot vectors (else integer class indices) for this loss."""
        return self.loss == "categorical_crossentropy"


@dataclass(frozen=True, kw_only=True)
class SweepConfig:
    """``[sweep]``: what ``cifarkit sweep RECIPE --trials N`` searches with Optuna. A run
    ignores it. ``params`` maps a dotted recipe key to its range: ``{ type = "float",
    low = 1e-4, high = 0.1, log = true }``, ``{ type = "int", low = 32, high = 256,
    step = 32 }`` or ``{ type = "categorical", choices = [64, 128] }`` (checked by
    ``cifarkit sweep``)."""

    metric: str = "val_accuracy"  # a metrics.csv column; each trial scores its best epoch
    direction: Literal["maximize", "minimize"] = "maximize"
    trials: Annotated[int, Range(1, 100000)] = 10
    pruner: Literal["median", "none"] = "median"  # Optuna's, on the per-epoch metric
    params: Any = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """A validated recipe with every plugin default filled in."""

    path: Path = field(metadata={"key": False})
    overrides: tuple[str, ...] = field(default=(), metadata={"key": False})
    name: str | None = field(default=None, metadata=RESUMABLE)  # None in a file: its stem
    description: str = field(default="", metadata=RESUMABLE)
    seed: Annotated[int, Range(0, 2**31 - 1)] = 0
    plugins: tuple[Path, ...] = field(default=(), metadata=RESUMABLE)
    data: DataConfig = field(default_factory=dict)  # type: ignore[arg-type]
    augmentation: Annotated[tuple[PluginCall, ...], PluginRef("augmentation")] = ()
    model: Annotated[PluginCall, PluginRef("model")]
    strategy: Annotated[PluginCall, PluginRef("strategy")] = field(
        default_factory=lambda: {"plugin": "one_device"})  # type: ignore[assignment]
    train: TrainConfig = field(default_factory=dict)  # type: ignore[arg-type]
    callbacks: Annotated[tuple[PluginCall, ...], PluginRef("callback")] = field(
        default=(), metadata=RESUMABLE)
    sweep: SweepConfig = field(default_factory=dict, metadata=RESUMABLE)  # type: ignore[arg-type]

    def with_backend(self, backend: str) -> "Recipe":
        """This recipe with ``train.backend`` set (what a run directory records)."""
        return replace(self, train=replace(self.train, backend=backend))

    def resolved(self) -> dict[str, Any]:
        """The fully resolved recipe as a TOML-ready dict (no ``extends``)."""
        return _resolved(self)

    def dumps(self) -> str:
        """The resolved recipe as TOML text; running it reproduces this recipe."""
        import tomli_w

        from cifarkit.errors import terminal_safe

        # a comment stays one line whatever the path or an override holds
        header = (f"# Fully resolved recipe written by cifarkit from {terminal_safe(self.path)}"
                  + (" with " + terminal_safe(" ".join("--set " + o for o in self.overrides))
                     if self.overrides else "")
                  + ".\n# `cifarkit run` on this file repeats the run.\n")
        return header + tomli_w.dumps(self.resolved())


def _schema(cls) -> dict[str, tuple[Any, Any]]:
    """A schema dataclass's recipe keys: name -> (annotation, field)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: (hints[f.name], f) for f in fields(cls) if f.metadata.get("key", True)}


def _base(ann: Any) -> Any:
    """An annotation without its ``Annotated`` extras."""
    return typing.get_args(ann)[0] if typing.get_origin(ann) is Annotated else ann


def _plugin_ref(ann: Any) -> PluginRef | None:
    if typing.get_origin(ann) is Annotated:
        return next((m for m in typing.get_args(ann)[1:] if isinstance(m, PluginRef)), None)
    return None


def _resolved(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (ann, _) in _schema(type(obj)).items():
        value = getattr(obj, name)
        ref = _plugin_ref(ann)
        if ref is not None and ref.inline:
            out[name] = value.plugin
            out.update(value.params)
        elif isinstance(value, PluginCall):
            out[name] = value.to_toml()
        elif is_dataclass(value):
            out[name] = _resolved(value)
        elif isinstance(value, tuple) and value and isinstance(value[0], PluginCall):
            out[name] = [c.to_toml() for c in value]
        else:
            out[name] = value
    return plain(out, drop_none=True)




def resume_editable(cls=None, prefix: str = "") -> list[str]:
    """The dotted recipe keys a resume may change, as the schema declares them."""
    cls = cls or Recipe
    out: list[str] = []
    for name, (ann, f) in _schema(cls).items():
        key = prefix + name
        if f.metadata.get("resume"):
            out.append(key)
        elif isinstance(_base(ann), type) and is_dataclass(_base(ann)):
            out.extend(resume_editable(_base(ann), key + "."))
    return out
