"""What summary.json and the report's header say about a run (``run``: a
:class:`cifarkit.runs.run.Run`)."""

from __future__ import annotations

import os
import platform
import socket
from datetime import datetime, timezone
from typing import Any

import numpy as np

from cifarkit.version import __version__

from cifarkit.runs import artifacts
from cifarkit.errors import plural


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def versions(run: Any) -> dict[str, str]:
    return {"cifarkit": __version__, **run.backend.versions(), "numpy": np.__version__,
            "python": platform.python_version()}


def start_summary(run: Any, previous: dict) -> dict[str, Any]:
    """summary.json as the run starts (status ``running``)."""
    recipe, data, parts = run.recipe, run.data, run.parts
    summary: dict[str, Any] = {
        "status": "running",
        "recipe": recipe.name,
        "recipe_file": str(recipe.path),
        "overrides": list(recipe.overrides),
        "run_dir": str(run.run_dir),
        "started_at": previous.get("started_at", now()),
        "dataset": recipe.data.dataset.plugin,
        "class_names": data.class_names,
        "train_examples": len(data.x_train),
        "validation_examples": 0 if data.x_val is None else len(data.x_val),
        "test_examples": len(data.x_test),
        "model": recipe.model.plugin,
        "parameters": int(parts.model.count_params()),
        "strategy": recipe.strategy.plugin,
        "replicas": parts.replicas,
        "workers": parts.role.workers,
        "learning_rate": parts.learning_rate,
        "mixed_precision": recipe.train.mixed_precision,
        "epochs_planned": recipe.train.epochs,
        "batch_size": recipe.data.batch_size,
        "deterministic": recipe.train.deterministic,
        "backend": run.backend.name,
        "versions": versions(run),
        "pid": os.getpid(),  # while status is "running": the process doing it
        "host": socket.gethostname(),
    }
    if run.resume is not None:
        summary.update(resumed=True, resume_count=int(previous.get("resume_count", 0)) + 1,
                       resumed_from_epoch=len(run.rows))
    return summary


def facts(run: Any, resumed_after: int | None) -> dict[str, str]:
    """The header the reporter prints before training."""
    recipe, data, parts, summary = run.recipe, run.data, run.parts, run.summary
    tr, role, name = recipe.train, parts.role, run.backend.name
    replicas = f"{parts.replicas} replica{'s' if parts.replicas != 1 else ''}"
    return {
        "recipe": recipe.name,
        "data": f"{recipe.data.dataset.plugin}: {len(data.x_train):,} train / "
                f"{summary['validation_examples']:,} validation / {len(data.x_test):,} test, "
                f"{len(data.class_names)} classes",
        "model": f"{recipe.model.plugin} ({summary['parameters']:,} parameters)",
        "backend": f"{name} (Keras {summary['versions']['keras']}, "
                   f"{name} {summary['versions'].get(name, '?')})",
        "strategy": f"{recipe.strategy.plugin} ({replicas}"
                    + (f", {role.workers} workers, this is the chief" if role.multi_worker else "")
                    + ")",
        "augmentation": ", ".join(a.plugin for a in recipe.augmentation) or "none",
        "training": f"{plural(tr.epochs, 'epoch')} x {plural(parts.steps, 'step')}, "
                    f"batch {recipe.data.batch_size}, "
                    f"{tr.optimizer.plugin} lr {parts.learning_rate:g}" + _schedule(run)
                    + (f", {tr.mixed_precision}" if tr.mixed_precision != "float32" else ""),
        **({"weights": parts.starting} if parts.starting else {}),
        **({"batchnorm": line} if (line := _precise_bn_line(run)) else {}),
        **({"left out": left_out} if (left_out := _left_out(run)) else {}),
        **({"note": advice} if (advice := run.backend.advice()) else {}),
        **_callback_lines(run),
        "run directory": str(run.run_dir),
        **({"resuming": f"after epoch {resumed_after} of {tr.epochs}"
                        + ("; a completed run trained on: early stopping's patience (and "
                           "other callbacks' epochs without improvement) starts again"
                           if run.continuing else "")}
           if resumed_after is not None else {}),
    }


def _precise_bn_line(run: Any) -> str | None:
    """What precise BatchNorm will do at the end of this run (its header line), or None."""
    from cifarkit.runs import precise_bn

    steps = run.recipe.train.epochs * run.parts.steps
    return precise_bn.header(run.recipe.train.precise_bn, run.parts.model, steps,
                             len(run.data.x_train), run.recipe.data.batch_size)


def _callback_lines(run: Any) -> dict[str, str]:
    """A header line for each callback that has one to give: its ``header`` attribute
    (where a tracker logs, say), under the callback's plugin name."""
    lines = {}
    for call, callback in zip(run.recipe.callbacks, run.callbacks or ()):
        text = getattr(callback, "header", None)
        if isinstance(text, str) and text:
            lines[call.plugin] = text
    return lines


def _schedule(run: Any) -> str:
    """The callback that sets the learning rate, with its parameters (", cosine_decay
    (warmup 0.1, end 0)"), or ", constant rate"."""
    for call in run.recipe.callbacks:
        if "learning_rate" in run.registry.get("callback", call.plugin).controls:
            shown = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                              for k, v in call.params.items()
                              if v is not None and not isinstance(v, (dict, list)))
            return f", {call.plugin}" + (f" ({shown})" if shown else "")
    return ", constant rate"


def _left_out(run: Any) -> str | None:
    """What each pass over the training data leaves out: the last partial batch, where
    the replicas need equal batches (another part of the data each pass)."""
    n, batch = len(run.data.x_train), run.recipe.data.batch_size
    if (run.recipe.train.steps_per_epoch is not None or not run.parts.drops_partial_batch
            or n % batch == 0):
        return None
    return (f"{n % batch:,} of {n:,} training examples per pass over the data (the last "
            "partial batch, another one each pass as the order is shuffled anew; "
            f"{run.parts.replicas} replicas need equal shares of every batch)")


def results(run: Any, monitor: str, best: int | None, best_value: float | None) -> dict[str, Any]:
    """What a completed run adds to summary.json."""
    from cifarkit.runs.loop import weights_checksum

    rows, test, tta = run.rows, run.test, run.recipe.train.tta
    measured = rows[1:] if len(rows) > 1 else rows
    train_time = sum(r["train_time_s"] for r in measured)
    compiles = artifacts.compile_times(rows)
    in_steps = None if None in compiles else sum(compiles)  # type: ignore[arg-type]
    total_train = sum(r["train_time_s"] for r in rows)
    compile_time = in_steps
    if in_steps is not None and run.backend.compiles():  # and what compiled outside the steps
        compile_time = in_steps + max(0.0, run.backend.compile_seconds()
                                      - run.monitor.epoch_compile_total)
    return {
        "test_accuracy": test["accuracy"],
        **({"test_tta": tta, "test_accuracy_without_tta": test["accuracy_without_tta"]}
           if tta != "none" else {}),
        "test_loss": test["loss"],
        "test_metrics": {k: v for k, v in test.items() if isinstance(v, float)},
        "per_class_accuracy": test["per_class_accuracy"],
        "stopped_early": len(rows) < run.recipe.train.epochs,
        "best_epoch": best,
        "best_monitor": monitor,
        "best_value": best_value,
        "train_time_s": total_train,
        "compile_time_s": compile_time,  # all of it: building, steps, evaluation
        "steady_train_time_s": None if in_steps is None else total_train - in_steps,
        "compilation_cache": None if run.parts.compile_cache is None
        else str(run.parts.compile_cache),
        "train_images_per_s": (run.images_per_epoch * len(measured) / train_time
                               if train_time else None),
        "train_images_per_s_note": ("steady state: the first epoch (graph tracing) is excluded"
                                    if len(rows) > 1 else "one epoch, including graph tracing"),
        **({"weights_checksum": weights_checksum(run.parts.model)}
           if run.parts.role.multi_worker else {}),
    }
