"""One recipe, one run: open -> train -> evaluate -> finish.

User errors (bad data, missing devices, bad plugin values) are raised before
the run directory exists, so a failed start leaves nothing behind. Whatever
happens after it exists, one ``finally`` writes the plots, the summary and
the status.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from cifarkit.runs import artifacts
from cifarkit.runs.snapshot import RunSnapshot

from cifarkit import backends
from cifarkit.errors import OutputError, is_plugin_exit, plugin_exit
from cifarkit.runs.lock import RunLock
from cifarkit.core.recipe import Recipe
from cifarkit.core.registry import Registry
from cifarkit.runs.report import Report
from cifarkit.runs.info import RunInfo
from cifarkit.runs.run import Run

__all__ = ["Run", "RunInfo", "run"]


def run(recipe: Recipe, registry: Registry, output: Path,
        reporter: Report | None = None, resume: RunSnapshot | None = None,
        lock: RunLock | None = None, name: str | None = None) -> RunInfo:
    """Train, evaluate and write the run directory for a validated recipe.

    With ``resume`` (the checked snapshot of an existing run directory whose
    ``recipe.toml`` is ``recipe``, read under ``lock``), continue from its last
    completed epoch instead. ``name``: the run directory's exact name in ``output``
    (else the recipe's name and the time).
    """
    # The backend is chosen once, before anything imports Keras, and passed along;
    # the run directory's recipe.toml names it (a resume runs on the same one).
    backend = backends.get(recipe.train.backend)
    recipe = recipe.with_backend(backend.name)
    backend.select(recipe.train.deterministic)
    with contextlib.ExitStack() as held:  # the run directory's lock, once there is one
        _claim(resume, lock, Path(output).absolute(), held, recipe.train.epochs)
        current = Run(recipe, registry, backend, reporter or Report(), held)
        current.open(Path(output).absolute(), resume, name)
        from cifarkit.runs.loop import Interrupted, Signals  # Keras callbacks: after the backend started

        # Signals stay handled until the run directory is final: the first stops
        # training (or skips evaluation), a second exits at once with a truthful summary.
        with Signals(on_second=current.on_second_signal) as signals:
            status, error = "failed", None
            try:
                current.train(signals)
                current.evaluate(signals)
                status = "completed"
            except Interrupted:
                status = "interrupted"
            except SystemExit as exc:  # a plugin's sys.exit(): failed, and said so
                status, error = "failed", plugin_exit(exc) if is_plugin_exit(exc) else exc
                if error is exc:
                    raise
                raise error from None
            except BaseException as exc:
                status, error = ("interrupted" if isinstance(exc, KeyboardInterrupt)
                                 else "failed"), exc
                raise
            finally:
                current.finish(status, error)
    return current.result


def _claim(resume: RunSnapshot | None, lock: RunLock | None, output: Path,
           held: contextlib.ExitStack, epochs: int) -> None:
    """Hold a resumed run directory's lock (taken before its snapshot was read); check a
    new run's output folder. A completed run resumes only to train on, to more than the
    epochs it ran."""
    if resume is None:
        artifacts.check_output(output)
        return
    held.enter_context(lock if lock is not None else RunLock(resume.path))
    artifacts.remove_debris(resume.path)
    previous = resume.summary
    if previous.get("status") == "completed":
        done = previous.get("epochs_run") or 0
        if epochs <= done:
            raise OutputError(f"{resume.path}: this run already completed ({done} epochs); to "
                              f"train it on, resume with --set train.epochs=N, N more than "
                              f"{done}")
        if resume.restore is None:
            raise OutputError(f"{resume.path}: this run completed without keeping its final "
                              "checkpoint (earlier cifarkit removed it, or it was deleted), so "
                              "it cannot train on; start a new run with train.init_from "
                              "pointing at it")
