"""cifarkit from Python, for notebooks and scripts: train a recipe, read a run, list the
plugins. ``cifarkit run`` and ``cifarkit list-plugins`` are built on these functions;
``cifarkit.list_runs`` is what ``cifarkit runs`` lists.

A mistake in what they are given (a bad recipe key, a missing data path, a foreign
run directory) raises :class:`cifarkit.CifarkitError` with the same one-line message
the command prints. See docs/api.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from cifarkit.runs.report import Report


@dataclass(frozen=True)
class RunInfo:
    """A run directory and its summary.json (``status``, ``test_accuracy``,
    ``epochs_run``, ``best_epoch``, ...)."""

    run_dir: Path
    summary: Mapping[str, Any] = field(repr=False)

    @property
    def status(self) -> str | None:
        return self.summary.get("status")

    @property
    def test_accuracy(self) -> float | None:
        return self.summary.get("test_accuracy")

    def metrics(self) -> list[dict[str, float | None]]:
        """metrics.csv: one dict per epoch (``epoch``, ``loss``, ``accuracy``,
        ``val_loss``, ``val_accuracy``, ``lr``, ...)."""
        from cifarkit.runs.listing import read_metrics

        return read_metrics(self.run_dir)


def train(recipe: str | os.PathLike | None = None, overrides: Sequence[str] = (),
          output: str | os.PathLike = "runs", *, plugins: Sequence[str | os.PathLike] = (),
          report: Report | None = None, resume: str | os.PathLike | None = None,
          trust_run: bool = False) -> RunInfo:
    """Train a recipe and evaluate it once on the test split, as ``cifarkit run`` does.

    Args:
        recipe: a recipe file, or the name of a shipped recipe ("default", "fast").
        overrides: ``KEY=VALUE`` strings, as ``--set`` takes them.
        output: the folder the run directory goes in.
        plugins: local plugin files to load (trusted code).
        report: what hears of the run's progress (a
            :class:`cifarkit.runs.report.Report`; default: nothing is printed).
        resume: a run directory to continue instead (``recipe`` left out); with
            ``overrides=["train.epochs=N"]`` a completed run trains on.
        trust_run: resume a run directory another user's cifarkit made.

    Returns the finished run (also when it was interrupted or failed: see ``status``).
    """
    from cifarkit.core.recipe import load_recipe, locate_recipe
    from cifarkit.core.registry import load_registry
    from cifarkit.errors import CifarkitError
    from cifarkit.runs.runner import run

    registry = load_registry(tuple(str(p) for p in plugins))
    if resume is not None:
        if recipe is not None:
            raise CifarkitError("run --resume RUN_DIR takes no RECIPE: a resumed run uses the "
                                "recipe.toml in its run directory (--set may change the keys "
                                "a resume can honour, such as train.epochs)")
        result = _resume(Path(resume).absolute(), overrides, registry, report, trust_run)
    else:
        if recipe is None:
            raise CifarkitError("run: give a RECIPE, or --resume RUN_DIR")
        loaded = load_recipe(locate_recipe(str(recipe)), list(overrides), registry)
        result = run(loaded, registry, Path(output), report)
    return RunInfo(result.run_dir, result.summary)


def _resume(run_dir: Path, overrides: Sequence[str], registry, report, trust_run: bool):
    """Lock the run directory, read it once (recipe, summary, checkpoint: a checked
    snapshot), refuse a foreign one unless ``trust_run``, and train on from the snapshot."""
    from cifarkit.core.recipe import load_recipe
    from cifarkit.errors import OutputError
    from cifarkit.runs.folder import is_regular
    from cifarkit.runs.lock import RunLock
    from cifarkit.runs.runner import run
    from cifarkit.runs.snapshot import open_run
    from cifarkit.runs.trust import check_resumable

    if not run_dir.is_dir():
        raise OutputError(f"{run_dir}: not a run directory (not found)")
    if not os.path.lexists(run_dir / "summary.json") and not is_regular(run_dir / "recipe.toml"):
        raise OutputError(f"{run_dir}: not a run directory (no summary.json)")
    with RunLock(run_dir) as lock, \
            open_run(run_dir, checkpoint=True, resumable=True) as snapshot:
        check_resumable(snapshot, trust_run)
        if snapshot.recipe_doc is None:
            raise OutputError(f"{run_dir}: not a run directory (no recipe.toml)")
        loaded = load_recipe(run_dir / "recipe.toml", list(overrides), registry,
                             document=snapshot.recipe_doc)
        return run(loaded, registry, run_dir.parent, report, resume=snapshot, lock=lock)


def load_run(run_dir: str | os.PathLike) -> RunInfo:
    """A finished (or interrupted) run directory, read as data: its summary.json,
    checked, and its metrics on demand. Nothing in it is run."""
    from cifarkit.runs.artifacts import read_summary

    path = Path(run_dir).absolute()
    return RunInfo(path, read_summary(path))


def list_plugins(kind: str | None = None,
                 plugins: Sequence[str | os.PathLike] = ()) -> list[dict[str, Any]]:
    """Every registered plugin (of ``kind``: "model", "augmentation", ...) as
    ``cifarkit list-plugins --json`` gives it: ``kind``, ``name``, ``source``,
    ``summary``, ``parameters``, ..."""
    from cifarkit.core.registry import load_registry

    registry = load_registry(tuple(str(p) for p in plugins))
    return [p.to_json() for p in registry.all() if kind is None or p.kind == kind]
