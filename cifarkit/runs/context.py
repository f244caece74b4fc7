"""What a run's lifecycle hooks see of it: :class:`RunContext`, a read-only view.

``run_start(run)``, ``run_fit(run)`` and ``run_finish(run, status)`` receive a
RunContext, not the engine: a plugin reads the recipe, the run directory, the
backend's name, the model and the metrics so far, and adds what it has to add
through three methods (a callback, a file in the run directory, a number in
summary.json). Setting any attribute is refused in one line naming the plugin.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from cifarkit.errors import PluginError

#: What ``run.X = ...`` is answered with.
READ_ONLY = ("the run is read-only to plugins: {name} cannot be set (add a callback with "
             "run.add_callback(), a file with run.artifact(NAME), a number with "
             "run.add_metric(NAME, VALUE); wrap training with a run_fit hookwrapper)")


class RunContext:
    """A read-only view of one run, for its lifecycle hooks.

    Attributes:
        recipe: the resolved recipe (frozen dataclasses; ``recipe.name``,
            ``recipe.train.epochs``, ...).
        run_dir: the run directory (a ``pathlib.Path``).
        backend: the Keras backend's name ("tensorflow" or "jax").
        model: the Keras model being trained. Read it (its layers, its weights);
            it is not a plugin's to replace.
        class_names: the dataset's class names (a tuple).
        steps: training steps per epoch. replicas: how many parts each batch is
            split into. batch_size: the recipe's (global) batch size.
        callbacks: the run's callbacks (a tuple).
        rows: the metrics.csv rows so far (copies: one dict per epoch).
        summary: summary.json as it stands (a read-only mapping).
    """

    __slots__ = ("_run", "_adding_callbacks")

    def __init__(self, run) -> None:
        object.__setattr__(self, "_run", run)
        object.__setattr__(self, "_adding_callbacks", True)

    def __setattr__(self, name: str, value: Any) -> None:
        raise PluginError(READ_ONLY.format(name=name))

    def __delattr__(self, name: str) -> None:
        raise PluginError(READ_ONLY.format(name=name))

    # -- what a plugin reads -----------------------------------------------------------
    recipe = property(lambda self: self._run.recipe)
    run_dir = property(lambda self: Path(self._run.run_dir))
    backend = property(lambda self: self._run.backend.name)
    model = property(lambda self: self._run.parts.model)
    class_names = property(lambda self: tuple(self._run.data.class_names))
    steps = property(lambda self: self._run.parts.steps)
    replicas = property(lambda self: self._run.parts.replicas)
    batch_size = property(lambda self: self._run.recipe.data.batch_size)
    callbacks = property(lambda self: tuple(self._run.callbacks))
    rows = property(lambda self: [dict(r) for r in self._run.rows])
    summary: Mapping[str, Any] = property(lambda self: MappingProxyType(self._run.summary))

    # -- what a plugin adds ------------------------------------------------------------
    def add_callback(self, callback) -> None:
        """Add a ``keras.callbacks.Callback`` to the run's (in ``run_start`` only)."""
        import keras

        if not self._adding_callbacks:
            raise PluginError("run.add_callback(): callbacks are added in run_start, before "
                              "training starts")
        if not isinstance(callback, keras.callbacks.Callback):
            raise PluginError(f"run.add_callback(): expected a keras.callbacks.Callback, got "
                              f"{type(callback).__name__}")
        self._run.callbacks.append(callback)

    def artifact(self, name: str) -> Path:
        """A path inside the run directory for a plugin to write (``name`` relative; never
        one of cifarkit's own files)."""
        from cifarkit.runs.artifacts import run_file

        path = run_file(self._run.run_dir, name, "run.artifact()")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def add_metric(self, name: str, value: float) -> None:
        """Record a finite number in summary.json under ``plugin_metrics`` (written with
        the summary; in ``run_finish``, written at once)."""
        if not isinstance(name, str) or not name or len(name) > 100:
            raise PluginError(f"run.add_metric(): a name of 1 to 100 characters, got {name!r}")
        if (not isinstance(value, (int, float)) or isinstance(value, bool)
                or not math.isfinite(value)):
            raise PluginError(f"run.add_metric({name!r}): expected a finite number, got "
                              f"{value!r}")
        self._run.summary.setdefault("plugin_metrics", {})[name] = float(value)

    # -- cifarkit's own ----------------------------------------------------------------
    def _started(self) -> None:
        """run_start is over: the callbacks are final."""
        object.__setattr__(self, "_adding_callbacks", False)

    def _training(self) -> None:
        """cifarkit's own training (its trylast ``run_fit`` implementation calls it)."""
        self._run.fit()
