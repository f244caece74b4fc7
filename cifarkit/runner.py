"""One recipe, one run: load -> build -> open the run directory -> train -> evaluate -> finish.

User errors (bad data, missing devices, bad plugin values) are raised before
the run directory exists, so a failed start leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import shutil
import socket
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from . import __version__, artifacts, build, checkpoint, framework, trust
from .trust import SIGNATURE_NAME
from .data import Prepared
from .errors import CifarkitError, OutputError, plural, terminal_safe
from .lock import LOCK_NAME, RunLock
from .recipe import Recipe
from .registry import Registry
from .reporter import Reporter


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]


def run(recipe: Recipe, registry: Registry, output: Path,
        reporter: Reporter | None = None, resume: Path | None = None) -> RunResult:
    """Train, evaluate and write the run directory for a validated recipe.

    With ``resume`` (an existing run directory whose ``recipe.toml`` is
    ``recipe``), continue from its last completed epoch instead.
    """
    # Before anything imports Keras: the backend is fixed for the process, and
    # the run directory's recipe.toml names it (a resume runs on the same one).
    recipe = recipe.with_backend(framework.requested(recipe.train.backend))
    framework.select(recipe.train.backend, recipe.train.deterministic)
    with contextlib.ExitStack() as held:  # the run directory's lock, once there is one
        previous: dict[str, Any] = {}
        if resume is not None:
            held.enter_context(RunLock(resume))  # before anything reads or writes it
            previous = artifacts.read_resumable(resume)
            artifacts.remove_debris(resume)
            if previous.get("status") == "completed":
                checkpoint.remove(resume)  # left by a kill during the final clean-up
                raise OutputError(f"{resume}: this run already completed; nothing to resume")
        else:
            artifacts.check_output(Path(output).absolute())
        return _run(recipe, registry, Path(output).absolute(), reporter or Reporter(), resume,
                    previous, held)


def _run(recipe: Recipe, registry: Registry, output: Path, reporter: Reporter,
         resume: Path | None, previous: dict[str, Any], held: contextlib.ExitStack) -> RunResult:
    started = time.perf_counter()

    # 1. Load: the data, in NumPy (a bad path fails here, before the framework starts).
    data = build.load_data(recipe, registry)

    # 2. Build: framework, strategy, model, optimizer, augmentation, datasets.
    saved, state = (checkpoint.usable(resume) if resume is not None else None) or (None, None)
    if state is not None:
        checkpoint.check_edits(recipe.train.epochs, recipe.resolved(), state, resume)
    parts = build.build(recipe, registry, data, (saved, state) if saved else None, resume)
    from . import training  # subclasses keras.callbacks.Callback: after the framework started

    if not parts.chief:  # other workers print nothing and write only to a temporary folder
        reporter = Reporter(Console(file=io.StringIO()))

    # 3. Open the run directory (its callbacks can still refuse their parameters).
    run_dir, plugin_callbacks = _open_run_dir(recipe, registry, parts, output, resume)
    rows: list[dict[str, Any]] = list(state["rows"]) if state else []
    prior_time = previous.get("wall_time_s") or sum(r.get("epoch_time_s", 0.0) for r in rows)
    summary = _start_summary(recipe, data, parts, run_dir, previous, resume, len(rows))
    try:
        if resume is None:
            held.enter_context(RunLock(run_dir))
            text = recipe.dumps()
            artifacts.atomic_write(run_dir / "recipe.toml", text)
            artifacts.atomic_write(run_dir / SIGNATURE_NAME, trust.signature(text) + "\n")
        artifacts.write_json(run_dir / "summary.json", summary)
    except CifarkitError:  # a full disk, say: no half-made run directory stays behind
        if resume is None:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    reporter.attach_log(run_dir / "run.log")
    if rows:
        artifacts.write_epoch_files(run_dir, rows)  # the checkpoint's history is the truth
    reporter.start(_facts(recipe, data, parts, summary, run_dir, len(rows) if resume else None))

    def end(status: str, **extra: Any) -> None:
        summary.update(status=status, finished_at=_now(), epochs_run=len(rows),
                       wall_time_s=prior_time + time.perf_counter() - started, **extra)
        artifacts.write_json(run_dir / "summary.json", summary)

    # 4. Train; 5. evaluate on the test split, touched once.
    images_per_epoch = (len(data.x_train) if recipe.train.steps_per_epoch is None
                        and not parts.split_batches else parts.steps * recipe.data.batch_size)

    def on_second_signal() -> int:  # exit at once, with a truthful summary
        if summary["status"] == "completed":
            return 0
        artifacts.remove_debris(run_dir)  # a model.keras being written, say
        end("interrupted", resume_command=artifacts.resume_command(run_dir))
        return 130

    # Signals stay handled until the run directory is final: the first stops
    # training (or skips evaluation), a second exits at once, and either way
    # summary.json says so.
    with training.Signals(on_second=on_second_signal) as signals:
        try:
            monitor = training.RunMonitor(reporter, run_dir, images_per_epoch, rows,
                                          plugin_callbacks, signals,
                                          (saved, state) if saved is not None else None,
                                          stop_at_step=not parts.multi_worker,
                                          recipe=recipe.resolved())
            reporter.train_begin(recipe.train.epochs, parts.steps, recipe.data.batch_size)
            # Epochs already done (or an early stop already decided) run no epoch
            # but still give callbacks their begin/end (restoring best weights).
            last = len(rows) if state and state["stop_training"] else recipe.train.epochs
            training.fit(recipe, parts, data, [*plugin_callbacks, monitor], len(rows), last,
                         signals)
            reporter.stop_live()
            signals.check()  # a signal just after the last epoch: evaluation can wait
            test = _evaluate(recipe, parts, data)
            signals.check()
            artifacts.save_model(parts.model, run_dir / "model.keras")
        except training.Interrupted:
            reporter.stop_live()
            artifacts.save_model(parts.model, run_dir / "model.keras")
            if rows:
                artifacts.plot_curves(rows, run_dir)
            end("interrupted", resume_command=artifacts.resume_command(run_dir))
            reporter.note(f"interrupted after {len(rows)} completed epoch(s), which are "
                          "checkpointed; model.keras holds the current weights. Resume with:")
            reporter.line(f"  {artifacts.resume_command(run_dir)}")
            _close(reporter, parts, run_dir)
            return RunResult(run_dir, summary)
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            reporter.write_log(f"run {status}:\n" + "".join(traceback.format_exception(exc)))
            end(status, error=terminal_safe(f"{type(exc).__name__}: {exc}"),
                resume_command=artifacts.resume_command(run_dir))
            if rows:
                artifacts.plot_curves(rows, run_dir)
            _close(reporter, parts, run_dir)
            raise

        # 6. Finish: plots, the final summary, then no checkpoint left.
        monitor_name, best, best_value = training.best_epoch(rows, plugin_callbacks)
        artifacts.plot_curves(rows, run_dir, best, best_by=monitor_name)
        artifacts.plot_confusion(test["confusion_matrix"], data.class_names,
                                 run_dir / "confusion_matrix.png")
        summary.pop("resume_command", None)
        summary.pop("error", None)
        end("completed", **_results(recipe, parts, rows, test, images_per_epoch,
                                    monitor_name, best, best_value))
        checkpoint.remove(run_dir)
        (run_dir / LOCK_NAME).unlink(missing_ok=True)  # complete: a resume now reads "completed"
    reporter.finish(summary)
    if not parts.chief:
        print(f"worker {parts.task_index} of {parts.workers} finished: "
              f"test_accuracy={summary['test_accuracy']:.6f} test_loss={summary['test_loss']:.6f} "
              f"weights_checksum={summary['weights_checksum']:.6f} "
              "(the chief, worker 0, writes the run directory)", flush=True)
    _close(reporter, parts, run_dir)
    return RunResult(run_dir, summary)


def _open_run_dir(recipe: Recipe, registry: Registry, parts: build.Built, output: Path,
                  resume: Path | None) -> tuple[Path, list]:
    """The run directory (new, resumed, or a non-chief worker's temporary one) and
    the recipe's callbacks writing into it."""
    lr = parts.learning_rate
    if not parts.chief:
        run_dir = Path(tempfile.mkdtemp(prefix=f"cifarkit-worker{parts.task_index}-"))
        callbacks = build.build_callbacks(registry, recipe, run_dir, lr)
    elif resume is not None:
        return resume, build.build_callbacks(registry, recipe, resume, lr)
    else:
        planned = output / artifacts.run_dir_name(recipe.name)
        callbacks = build.build_callbacks(registry, recipe, planned, lr)  # may fail: nothing written
        run_dir = artifacts.create_run_dir(output, recipe.name)
        if run_dir != planned:  # another run took the name first: rebuild with the real path
            callbacks = build.build_callbacks(registry, recipe, run_dir, lr)
    return run_dir, callbacks


def _start_summary(recipe: Recipe, data: Prepared, parts: build.Built, run_dir: Path,
                   previous: dict, resume: Path | None, epochs_done: int) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "status": "running",
        "recipe": recipe.name,
        "recipe_file": str(recipe.path),
        "overrides": list(recipe.overrides),
        "run_dir": str(run_dir),
        "started_at": previous.get("started_at", _now()),
        "dataset": recipe.data.dataset.plugin,
        "class_names": data.class_names,
        "train_examples": len(data.x_train),
        "validation_examples": 0 if data.x_val is None else len(data.x_val),
        "test_examples": len(data.x_test),
        "model": recipe.model.plugin,
        "parameters": int(parts.model.count_params()),
        "strategy": recipe.strategy.plugin,
        "replicas": parts.replicas,
        "workers": parts.workers,
        "learning_rate": parts.learning_rate,
        "mixed_precision": recipe.train.mixed_precision,
        "epochs_planned": recipe.train.epochs,
        "batch_size": recipe.data.batch_size,
        "deterministic": recipe.train.deterministic,
        "backend": parts.backend,
        "versions": _versions(parts.backend),
        "pid": os.getpid(),  # while status is "running": the process doing it
        "host": socket.gethostname(),
    }
    if resume is not None:
        summary.update(resumed=True, resume_count=int(previous.get("resume_count", 0)) + 1,
                       resumed_from_epoch=epochs_done)
    return summary


def _facts(recipe: Recipe, data: Prepared, parts: build.Built, summary: dict, run_dir: Path,
           resumed_after: int | None) -> dict[str, str]:
    """The header the reporter prints before training."""
    tr = recipe.train
    replicas = f"{parts.replicas} replica{'s' if parts.replicas != 1 else ''}"
    return {
        "recipe": recipe.name,
        "data": f"{recipe.data.dataset.plugin}: {len(data.x_train):,} train / "
                f"{summary['validation_examples']:,} validation / {len(data.x_test):,} test, "
                f"{len(data.class_names)} classes",
        "model": f"{recipe.model.plugin} ({summary['parameters']:,} parameters)",
        "backend": f"{parts.backend} (Keras {summary['versions']['keras']}, "
                   f"{parts.backend} {summary['versions'].get(parts.backend, '?')})",
        "strategy": f"{recipe.strategy.plugin} ({replicas}"
                    + (f", {parts.workers} workers, this is the chief" if parts.multi_worker else "")
                    + ")",
        "augmentation": ", ".join(a.plugin for a in recipe.augmentation) or "none",
        "training": f"{plural(tr.epochs, 'epoch')} x {plural(parts.steps, 'step')}, "
                    f"batch {recipe.data.batch_size}, "
                    f"{tr.optimizer.plugin} lr {parts.learning_rate:g}"
                    + (f", {tr.mixed_precision}" if tr.mixed_precision != "float32" else ""),
        "run directory": str(run_dir),
        **({"resuming": f"after epoch {resumed_after} of {tr.epochs}"}
           if resumed_after is not None else {}),
    }


def _evaluate(recipe: Recipe, parts: build.Built, data: Prepared) -> dict[str, Any]:
    """The test split's scores (with the recipe's test-time augmentation)."""
    from .distributed import predict as predict_locally
    from .evaluation import predict_tta, score

    batch = recipe.data.batch_size
    if parts.split_batches:  # several replicas: predictions outside them
        predict = lambda x: predict_locally(parts.model, x, batch)  # noqa: E731
    else:
        predict = lambda x: parts.model.predict(x, batch_size=batch, verbose=0)  # noqa: E731
    probs, plain = predict_tta(predict, data.x_test.astype("float32"), recipe.train.tta)
    test = score(probs, data.y_test, data.class_names, parts.loss, recipe.train.one_hot,
                 recipe.train.metrics)
    if recipe.train.tta != "none":
        test["accuracy_without_tta"] = float((plain.argmax(axis=1) == data.y_test).mean())
    return test


def _results(recipe: Recipe, parts: build.Built, rows: list, test: dict, images_per_epoch: int,
             monitor: str, best: int | None, best_value: float | None) -> dict[str, Any]:
    """What a completed run adds to summary.json."""
    from .distributed import weights_checksum

    measured = rows[1:] if len(rows) > 1 else rows
    train_time = sum(r["train_time_s"] for r in measured)
    compiles = artifacts.compile_times(rows)
    compile_time = None if None in compiles else sum(compiles)  # type: ignore[arg-type]
    total_train = sum(r["train_time_s"] for r in rows)
    tta = recipe.train.tta
    return {
        "test_accuracy": test["accuracy"],
        **({"test_tta": tta, "test_accuracy_without_tta": test["accuracy_without_tta"]}
           if tta != "none" else {}),
        "test_loss": test["loss"],
        "test_metrics": {k: v for k, v in test.items() if isinstance(v, float)},
        "per_class_accuracy": test["per_class_accuracy"],
        "stopped_early": len(rows) < recipe.train.epochs,
        "best_epoch": best,
        "best_monitor": monitor,
        "best_value": best_value,
        "train_time_s": total_train,
        "compile_time_s": compile_time,
        "steady_train_time_s": None if compile_time is None else total_train - compile_time,
        "train_images_per_s": images_per_epoch * len(measured) / train_time if train_time else None,
        "train_images_per_s_note": ("steady state: the first epoch (graph tracing) is excluded"
                                    if len(rows) > 1 else "one epoch, including graph tracing"),
        **({"weights_checksum": weights_checksum(parts.model)} if parts.multi_worker else {}),
    }


def _close(reporter: Reporter, parts: build.Built, run_dir: Path) -> None:
    reporter.close()
    if not parts.chief:
        shutil.rmtree(run_dir, ignore_errors=True)


def _versions(backend: str) -> dict[str, str]:
    return {"cifarkit": __version__, **framework.versions(backend), "numpy": np.__version__,
            "python": platform.python_version()}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
