"""The run as one object: :class:`Run` with ``open``, ``train``, ``evaluate`` and ``finish``.

Plugins see it in the lifecycle hooks (:mod:`cifarkit.core.hookspecs`:
``run_start``, ``run_fit``, ``run_finish``). What a plugin may read:
``recipe``, ``backend``, ``data``, ``parts`` (model, strategy, datasets,
steps, replicas), ``run_dir``, ``rows`` (the per-epoch metrics so far),
``summary`` (what summary.json holds) and ``callbacks`` (the recipe's).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit.runs import artifacts, build, checkpoint, manifest, plots, trust
from cifarkit.backends import Backend
from cifarkit.errors import CifarkitError, DataError, terminal_safe
from cifarkit.runs.lock import LOCK_NAME, RunLock
from cifarkit.core.recipe import Recipe
from cifarkit.core.registry import Registry
from cifarkit.runs.context import ContextFeed
from cifarkit.runs.info import RunInfo
from cifarkit.runs.report import Report
from cifarkit.runs.snapshot import RunSnapshot
from cifarkit.runs.summary import facts, now, start_summary


def _check_same_data(data, previous: dict[str, Any], run_dir: Path) -> None:
    """A resume trains on the data the run started with: the same class names and split
    sizes (data moved elsewhere is fine; other data is one line)."""
    now = {"class_names": data.class_names, "train_examples": len(data.x_train),
           "validation_examples": 0 if data.x_val is None else len(data.x_val),
           "test_examples": len(data.x_test)}
    for key, value in now.items():
        before = previous.get(key)
        if before is not None and before != value:
            shown = (lambda v: ", ".join(map(str, v[:5])) + (" ..." if len(v) > 5 else "")
                     ) if key == "class_names" else str
            raise DataError(f"{run_dir / 'recipe.toml'}: data: the data now gives {key} "
                            f"{shown(value)}, but the run started with {shown(before)}; a "
                            "resume must train on the same data (point data.path at it)")


class Run:
    """One run of one recipe on one backend, from its run directory's creation to its end."""

    def __init__(self, recipe: Recipe, registry: Registry, backend: Backend, reporter: Report,
                 held: contextlib.ExitStack):
        self.recipe, self.registry, self.backend = recipe, registry, backend
        self.reporter, self._held = reporter, held
        self.started = time.perf_counter()
        self.rows: list[dict[str, Any]] = []
        self.summary: dict[str, Any] = {}
        self.test: dict[str, Any] | None = None
        self.restore: tuple[Path, dict[str, Any]] | None = None
        self.resume: Path | None = None
        self.continuing = False

    # -- open: data, parts, run directory ------------------------------------------
    def open(self, output: Path, snapshot: RunSnapshot | None, name: str | None = None) -> None:
        """Load the data and build the parts (either may refuse: nothing written yet),
        then create (or reopen) the run directory and write recipe and summary. A resume
        takes everything from ``snapshot``, the run directory as it was read once."""
        recipe, self.snapshot = self.recipe, snapshot
        self.resume = resume = snapshot.path if snapshot is not None else None
        previous = snapshot.summary if snapshot is not None else {}
        self.continuing = previous.get("status") == "completed"  # trained on, to more epochs
        self.data = build.load_data(recipe, self.registry)  # a bad path fails before Keras starts
        if resume is not None:
            _check_same_data(self.data, previous, resume)
        self.restore = snapshot.restore if snapshot is not None else None
        state = self.restore.state if self.restore is not None else None
        if state is not None:
            checkpoint.check_edits(recipe, self.registry, state, resume)
        self.parts = build.build(recipe, self.registry, self.data, self.restore, resume)
        if not self.parts.role.chief:  # other workers print nothing, write only a temporary folder
            self.reporter = Report()
        self.run_dir, self.callbacks = self._open_run_dir(output, name)
        self.rows = list(state["rows"]) if state else []
        self.prior_time = (previous.get("wall_time_s")
                           or sum(r.get("epoch_time_s", 0.0) for r in self.rows))
        self.summary = start_summary(self, previous)
        self._write_start()
        self.reporter.attach_log(self.run_dir / "run.log")
        if self.rows:
            artifacts.write_epoch_files(self.run_dir, self.rows)  # the checkpoint's history
        self.reporter.start(facts(self, len(self.rows) if resume else None))
        self.feed = ContextFeed(  # what its lifecycle hooks see of it: copies, no engine
            recipe=self.recipe, run_dir=self.run_dir, backend=self.backend.name,
            model=self.parts.model, class_names=self.data.class_names, steps=self.parts.steps,
            replicas=self.parts.replicas, callbacks=self.callbacks)
        self.feed.show(self.rows, self.summary)

    def _open_run_dir(self, output: Path, name: str | None) -> tuple[Path, list]:
        """The run directory (new: ``name`` in ``output`` when given; resumed; or a
        non-chief worker's temporary one) and the recipe's callbacks writing into it
        (they may still refuse their parameters)."""
        def callbacks(run_dir: Path) -> list:
            return build.build_callbacks(self.registry, self.recipe, run_dir,
                                         self.parts.learning_rate, self.backend)

        if not self.parts.role.chief:
            run_dir = Path(tempfile.mkdtemp(prefix=f"cifarkit-worker{self.parts.role.task_index}-"))
            return run_dir, callbacks(run_dir)
        if self.resume is not None:
            return self.resume, callbacks(self.resume)
        planned = output / (name or artifacts.run_dir_name(self.recipe.name))
        made = callbacks(planned)  # may fail: nothing written yet
        run_dir = artifacts.create_run_dir(output, self.recipe.name, exact=name)
        return run_dir, made if run_dir == planned else callbacks(run_dir)

    def _write_start(self) -> None:
        """recipe.toml, the signed manifest and the first summary.json; a failed write (a
        full disk) leaves no half-made run directory."""
        try:
            if self.resume is None:
                self._held.enter_context(RunLock(self.run_dir))
            if self.parts.role.chief:
                book = self._manifest()
                manifest.start_signing(book)  # every later write is recorded in it
                self._held.callback(manifest.stop_signing, self.run_dir)
            if self.resume is None or self.recipe.overrides:  # (--set on a resume: checked)
                artifacts.atomic_write(self.run_dir / "recipe.toml", self.recipe.dumps())
            artifacts.write_json(self.run_dir / "summary.json", self.summary)
        except CifarkitError:
            if self.resume is None:
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise

    def _manifest(self) -> manifest.Manifest:
        """The run folder's manifest: new for a new run; for a resume, the folder's own
        (it was checked) or, for one the user vouched for (--trust-run), what was read."""
        key = trust.run_key(create=True)
        snapshot = self.snapshot
        if snapshot is None:
            return manifest.Manifest(self.run_dir, key)
        files = snapshot.manifest_files if snapshot.own else {
            name: [digest] for name, digest in snapshot.digests.items()}
        if not snapshot.own and snapshot.recipe_text is not None:
            files["recipe.toml"] = [trust.recipe_digest(key, snapshot.recipe_text)]
        return manifest.Manifest(self.run_dir, key, files)

    @property
    def images_per_epoch(self) -> int:
        if self.recipe.train.steps_per_epoch is None and not self.parts.drops_partial_batch:
            return len(self.data.x_train)
        return self.parts.steps * self.recipe.data.batch_size

    # -- train and evaluate ------------------------------------------------------------
    def train(self, signals) -> None:
        """The epochs not yet done, through the ``run_fit`` hook (cifarkit's own fit last)."""
        from cifarkit.runs import loop as training

        self.signals = signals
        self.registry.run_hook("run_start", run=self.feed.context)
        self.callbacks.extend(self.feed.callbacks_added())
        self.monitor = training.RunMonitor(
            self.reporter, self.run_dir, self.images_per_epoch, self.rows, self.callbacks,
            signals, self.restore, stop_at_step=not self.parts.role.multi_worker,
            recipe=self.recipe.resolved(),
            compile_clock=self.backend.compile_seconds if self.backend.compiles() else None,
            fresh_patience=self.continuing,
            on_row=lambda rows: self.feed.show(rows, self.summary))
        self.reporter.train_begin(self.recipe.train.epochs, self.parts.steps,
                                  self.recipe.data.batch_size)
        self.feed.show(self.rows, self.summary)
        with self.registry.core_fit(self.fit):  # cifarkit's own run_fit: this run's fit
            self.registry.run_hook("run_fit", run=self.feed.context)
        self.reporter.stop_live()

    def fit(self) -> None:
        """Keras's fit (or the backend's multi-worker loop) over the remaining epochs.
        Epochs already done (or an early stop already decided) run no epoch but still
        give callbacks their begin/end (restoring best weights)."""
        from cifarkit.runs import loop as training

        state = self.restore[1] if self.restore else None
        stopped = state and state.get("stop_training") and not self.continuing
        last = len(self.rows) if stopped else self.recipe.train.epochs
        training.fit(self.recipe, self.parts, self.data,
                     [training.EpochRate(), *self.callbacks, self.monitor],
                     len(self.rows), last, self.signals)

    def evaluate(self, signals) -> None:
        """The test split, touched once (with the recipe's test-time augmentation); then
        model.keras."""
        from cifarkit.runs.evaluation import TTA_VIEWS, probabilities, score

        signals.check()  # a signal just after the last epoch: evaluation can wait
        recipe, data = self.recipe, self.data
        views = TTA_VIEWS[recipe.train.tta]

        def progress(done: int, total: int) -> None:
            self.reporter.evaluating(done, total, f" ({views} views)" if views > 1 else "")
            signals.check()

        self._precise_bn(signals)
        probs, plain = probabilities(self.backend, self.parts.model, data.x_test,
                                     recipe.data.batch_size, recipe.train.tta,
                                     outside_replicas=self.parts.split_batches,
                                     progress=progress)
        self.reporter.stop_live()
        test = score(probs, data.y_test, data.class_names, self.parts.loss,
                     recipe.train.one_hot, recipe.train.metrics)
        if not np.isfinite(test["loss"]) or not np.isfinite(probs).all():
            from cifarkit.runs.loop import Diverged

            raise Diverged(f"the model diverged: its test loss is {test['loss']} (non-finite "
                           "predictions); the run failed, and model.keras was not written. A "
                           "lower train.learning_rate, or gradient clipping, usually helps")
        if recipe.train.tta != "none":
            test["accuracy_without_tta"] = float((plain.argmax(axis=1) == data.y_test).mean())
        signals.check()
        self.reporter.phase("saving model.keras", 0, 1, "file")
        artifacts.save_model(self.parts.model, self.run_dir / "model.keras")
        self.reporter.phase("saving model.keras", 1, 1, "file")
        self.reporter.stop_live()
        self.test = test

    def _precise_bn(self, signals) -> None:
        """BatchNorm statistics recomputed over training batches where the moving averages
        have not settled (:mod:`cifarkit.runs.precise_bn`), before the test split."""
        from cifarkit.backends import sync_weights
        from cifarkit.runs import precise_bn

        model, recipe = self.parts.model, self.recipe
        steps = len(self.rows) * self.parts.steps
        if not precise_bn.wanted(recipe.train.precise_bn, model, steps):
            return
        sync_weights(model)
        started = time.perf_counter()

        def progress(done: int, total: int) -> None:
            self.reporter.phase("recomputing BatchNorm statistics", done, total)
            signals.check()

        done = precise_bn.recompute(model, self.data.x_train, recipe.data.batch_size,
                                    seed=recipe.seed, progress=progress)
        self.reporter.stop_live()
        self.summary["precise_bn"] = {**done, "seconds": time.perf_counter() - started,
                                      "moving_average_left_at_start":
                                      precise_bn.leftover(model, steps)}

    # -- finish: plots, summary, status ------------------------------------------------
    def finish(self, status: str, error: BaseException | None = None) -> None:
        """Write what the outcome calls for, whatever it is: plots, summary.json with the
        status, the model when interrupted, the closing report."""
        self.reporter.stop_live()
        if status == "completed":
            self._complete()
        elif status == "interrupted" and error is None:  # a signal, caught between steps
            artifacts.save_model(self.parts.model, self.run_dir / "model.keras")
            if self.rows:
                plots.plot_curves(self.rows, self.run_dir,
                                  title=f"{self.run_dir.name} (interrupted)")
            self.end("interrupted", resume_command=artifacts.resume_command(self.run_dir))
            self.reporter.note(f"interrupted after {len(self.rows)} completed epoch(s), which "
                               "are checkpointed; model.keras holds the current weights. "
                               "Resume with:")
            self.reporter.line(f"  {artifacts.resume_command(self.run_dir)}")
        else:
            self.reporter.write_log(f"run {status}:\n"
                                    + "".join(traceback.format_exception(error)))
            self.end(status, error=terminal_safe(f"{type(error).__name__}: {error}"),
                     resume_command=artifacts.resume_command(self.run_dir))
            if self.rows:
                plots.plot_curves(self.rows, self.run_dir, title=f"{self.run_dir.name} ({status})")
        self._close()
        from cifarkit.core.registry import FinishFailed

        written = dict(self.summary.get("plugin_metrics") or {})
        self.feed.show(self.rows, self.summary)
        results = self.registry.run_hook("run_finish", run=self.feed.context, status=status) or []
        self._take_metrics()
        failures = [r.message for r in results if isinstance(r, FinishFailed)]
        if failures:  # a tracker that failed: the outcome says so
            self.summary["finish_errors"] = failures
        if (failures or self.summary.get("plugin_metrics", {}) != written) \
                and self.parts.role.chief:
            artifacts.write_json(self.run_dir / "summary.json", self.summary)

    def _complete(self) -> None:
        from cifarkit.runs.summary import results
        from cifarkit.runs.loop import best_epoch

        monitor, best, value = best_epoch(self.rows, self.callbacks)
        title = f"{self.run_dir.name}, test accuracy {100 * self.test['accuracy']:.2f} %"
        self.reporter.phase("writing the plots", 0, 2, "figures")
        plots.plot_curves(self.rows, self.run_dir, best, best_by=monitor, title=title)
        self.reporter.phase("writing the plots", 1, 2, "figures")
        plots.plot_confusion(self.test["confusion_matrix"], self.data.class_names,
                             self.run_dir / "confusion_matrix.png", title)
        self.reporter.phase("writing the plots", 2, 2, "figures")
        self.reporter.stop_live()
        self.summary.pop("resume_command", None)
        self.summary.pop("error", None)
        self.end("completed", **results(self, monitor, best, value))
        checkpoint.keep_final(self.run_dir)
        (self.run_dir / LOCK_NAME).unlink(missing_ok=True)  # a resume now reads "completed"
        self.reporter.finish(self.summary)
        role = self.parts.role
        if not role.chief:
            s = self.summary
            print(f"worker {role.task_index} of {role.workers} finished: "
                  f"test_accuracy={s['test_accuracy']:.6f} test_loss={s['test_loss']:.6f} "
                  f"weights_checksum={s['weights_checksum']:.6f} "
                  "(the chief, worker 0, writes the run directory)", flush=True)

    def _take_metrics(self) -> None:
        metrics = self.feed.metrics()
        if metrics:
            self.summary["plugin_metrics"] = {**(self.summary.get("plugin_metrics") or {}),
                                              **metrics}

    def end(self, status: str, **extra: Any) -> None:
        """summary.json with its final status."""
        self._take_metrics()
        this = time.perf_counter() - self.started
        self.summary.update(status=status, finished_at=now(), epochs_run=len(self.rows),
                            wall_time_s=self.prior_time + this,
                            **({"wall_time_this_invocation_s": this} if self.resume else {}),
                            **extra)
        artifacts.write_json(self.run_dir / "summary.json", self.summary)

    def on_second_signal(self) -> int:
        """A second Ctrl-C: exit at once, with a truthful summary."""
        if self.summary.get("status") == "completed":
            return 0
        artifacts.remove_debris(self.run_dir)  # a model.keras being written, say
        self.end("interrupted", resume_command=artifacts.resume_command(self.run_dir))
        return 130

    def _close(self) -> None:
        self.reporter.close()
        if not self.parts.role.chief:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    @property
    def result(self) -> RunInfo:
        return RunInfo(self.run_dir, self.summary)

