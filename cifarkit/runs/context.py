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
            ``recipe.train.epochs``, ...): a copy, so nothing done to it reaches
            the run.
        run_dir: the run directory (a ``pathlib.Path``).
        backend: the Keras backend's name ("tensorflow" or "jax").
        model: the Keras model being trained. Read it (its layers, its weights);
            it is not a plugin's to replace.
        class_names: the dataset's class names (a tuple).
        steps: training steps per epoch. replicas: how many parts each batch is
            split into. batch_size: the recipe's (global) batch size.
        callbacks: the run's callbacks (a tuple).
        rows: the metrics.csv rows so far (copies: one dict per epoch).
        summary: summary.json as it stands (a read-only copy).

    The context holds copies and nothing of the engine: the run gives it what
    plugins may read, and takes from it only what they add (callbacks before
    training, metrics, checked again when the run writes them).
    """

    __slots__ = ("_facts", "_rows", "_summary", "_added", "_metrics", "_adding_callbacks")

    def __init__(self, facts: Mapping[str, Any]) -> None:
        for name, value in (("_facts", facts), ("_rows", []),
                            ("_summary", MappingProxyType({})), ("_added", []),
                            ("_metrics", {}), ("_adding_callbacks", True)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise PluginError(READ_ONLY.format(name=name))

    def __delattr__(self, name: str) -> None:
        raise PluginError(READ_ONLY.format(name=name))

    def __getattr__(self, name: str) -> Any:
        facts = object.__getattribute__(self, "_facts")
        if name in facts:
            return facts[name]
        raise AttributeError(f"the run's context has no attribute {name!r} (it has "
                             f"{', '.join([*facts, 'rows', 'summary'])})")

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._rows]

    @property
    def summary(self) -> Mapping[str, Any]:
        return self._summary

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
        self._added.append(callback)

    def artifact(self, name: str) -> Path:
        """A path inside the run directory for a plugin to write (``name`` relative; never
        one of cifarkit's own files, never through a link)."""
        from cifarkit.runs.folder import run_file
        from cifarkit.runs.folder import subfolder

        run_dir = self._facts["run_dir"]
        path = run_file(run_dir, name, "run.artifact()")
        parent = run_dir
        for part in path.relative_to(run_dir).parts[:-1]:  # real folders of the run, no links
            parent = subfolder(parent, part)
        return path

    def add_metric(self, name: str, value: float) -> None:
        """Record a finite number in summary.json under ``plugin_metrics`` (written with
        the summary; in ``run_finish``, written at once)."""
        check_metric(name, value)
        self._metrics[name] = float(value)


def check_metric(name: Any, value: Any) -> None:
    """A plugin metric's name and value, or one line saying what is wrong."""
    if not isinstance(name, str) or not name or len(name) > 100:
        raise PluginError(f"run.add_metric(): a name of 1 to 100 characters, got {name!r}")
    if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or not math.isfinite(value)):
        raise PluginError(f"run.add_metric({name!r}): expected a finite number, got "
                          f"{value!r}")


class ContextFeed:
    """The run's side of a :class:`RunContext`: it makes the context from copies of what
    plugins may read, shows it new rows and the summary (copies), and takes what
    plugins added, checked again."""

    def __init__(self, *, recipe, run_dir: Path, backend: str, model, class_names, steps: int,
                 replicas: int, callbacks) -> None:
        import copy

        self._facts = {"recipe": copy.deepcopy(recipe), "run_dir": Path(run_dir),
                       "backend": backend, "model": model, "class_names": tuple(class_names),
                       "steps": steps, "replicas": replicas,
                       "batch_size": recipe.data.batch_size, "callbacks": tuple(callbacks)}
        self.context = RunContext(MappingProxyType(self._facts))

    def show(self, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
        import copy

        object.__setattr__(self.context, "_rows", [dict(r) for r in rows])
        object.__setattr__(self.context, "_summary", MappingProxyType(copy.deepcopy(summary)))

    def callbacks_added(self) -> list:
        """The callbacks plugins added in run_start; none can be added after."""
        object.__setattr__(self.context, "_adding_callbacks", False)
        added = list(object.__getattribute__(self.context, "_added"))
        self._facts["callbacks"] = (*self._facts["callbacks"], *added)
        return added

    def metrics(self) -> dict[str, float]:
        """The metrics plugins added, each checked again (a plugin could reach the dict)."""
        out = {}
        for name, value in dict(object.__getattribute__(self.context, "_metrics")).items():
            check_metric(name, value)
            out[name] = float(value)
        return out
