"""Training: signals, cifarkit's own callbacks, and ``fit`` (or the multi-worker loop).

Imported by the runner once the framework has started (it subclasses
``keras.callbacks.Callback``).
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np


from cifarkit.errors import CifarkitError
from cifarkit.runs import artifacts, checkpoint
from cifarkit.backends import Backend, sync_weights
from cifarkit.runs.build import Built
from cifarkit.data import Prepared
from cifarkit.runs.evaluation import score
from cifarkit.core.recipe import Recipe
from cifarkit.runs.report import Report


class Interrupted(Exception):
    """Raised inside ``fit`` after the step that was running when SIGINT arrived."""


class Diverged(CifarkitError):
    """The training loss became NaN or infinite: the run stops (status ``failed``)."""


def _check_finite(logs: dict[str, float], epoch: int, step: int, steps: int) -> None:
    """A non-finite training loss, or (at an epoch's end) validation loss, is divergence."""
    for key, what in (("loss", "loss"), ("val_loss", "validation loss")):
        loss = logs.get(key)
        if loss is not None and not math.isfinite(loss):
            where = (f"after epoch {epoch}" if key == "val_loss"
                     else f"by epoch {epoch}, step {step} of {steps}")
            raise Diverged(f"training diverged: the {what} is {loss} {where}; the run "
                           "stopped there, and its last checkpoint (the last finite epoch) "
                           "is kept. A lower train.learning_rate, or gradient clipping in "
                           "the optimizer, usually helps")


class Signals:
    """First SIGINT/SIGTERM: stop after the current step. Second: exit at once
    with the status ``on_second()`` returns (after it recorded the outcome)."""

    def __init__(self, on_second: Callable[[], int]):
        self.requested = False
        self.on_second = on_second
        self._old: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            os._exit(self.on_second())
        self.requested = True

    def check(self) -> None:
        """Raise :class:`Interrupted` if a signal has arrived."""
        if self.requested:
            raise Interrupted()

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _learning_rate(model) -> float | None:
    try:
        return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    except Exception:
        return None


def _mean_rate(model, first: int, steps: int) -> float | None:
    """The mean of the rate an epoch's steps ``first`` .. ``first + steps - 1`` used, where
    the optimizer's rate is a schedule (computed on the host, nothing synchronised);
    None where it is a value (set once per epoch at most, by a callback)."""
    from cifarkit.backends.keras_internals import learning_rate_schedule

    schedule = learning_rate_schedule(getattr(model, "optimizer", None))
    if schedule is None or steps < 1:
        return None
    try:
        return float(np.mean([float(keras.ops.convert_to_numpy(schedule(step)))
                              for step in range(first, first + steps)]))
    except Exception:  # a schedule that needs a traced step: the first step's rate stays
        return None


class EpochRate(keras.callbacks.Callback):
    """Puts the learning rate the epoch used into its logs (``learning_rate``), first of
    the callbacks, so metrics.csv, the reporter and trackers (MLflow) all see it: the
    mean over the epoch's steps where the rate is a schedule, else the rate its first
    step used. A callback that changes the rate at the epoch's end (ReduceLROnPlateau)
    logs the rate the epoch used as well."""

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:  # after the epoch-begin callbacks (LearningRateScheduler) set it
            self.first = _learning_rate(self.model)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        steps = (self.params or {}).get("steps") or 0
        mean = _mean_rate(self.model, epoch * steps, steps)
        rate = mean if mean is not None else getattr(self, "first", None)
        if rate is not None:
            logs["learning_rate"] = rate


class RunMonitor(keras.callbacks.Callback):
    """cifarkit's own callback: timing, per-epoch files and checkpoint, reporter, Ctrl-C.

    Args:
        reporter: the console reporter.
        run_dir: the run directory.
        images_per_epoch: training images one epoch sees (for images/s).
        rows: the metrics history; one row is appended per epoch.
        plugin_callbacks: the recipe's callbacks (their state is checkpointed).
        signals: the run's signal handler.
        restore: the checked checkpoint (:class:`cifarkit.runs.checkpoint.Restore`) when
            resuming, else ``None``.
        stop_at_step: stop after the current step when a signal arrived
            (else the training loop checks at the epoch's end).
        recipe: the resolved recipe, kept in each checkpoint (what a resume checks edits against).
        compile_clock: seconds this process has spent compiling so far (the backend's
            count); each epoch's row then holds its measured ``compile_time_s``.
    """

    def __init__(self, reporter: Report, run_dir: Path, images_per_epoch: int, rows: list,
                 plugin_callbacks: list, signals: Signals, restore: tuple | None,
                 stop_at_step: bool = True, recipe: dict | None = None,
                 compile_clock: Callable[[], float] | None = None, fresh_patience: bool = False,
                 on_row: Callable[[list], None] | None = None):
        super().__init__()
        self.on_row = on_row  # told of each new row (the hooks' context shows them)
        self.fresh_patience = fresh_patience  # a completed run trained on
        # seconds compiled so far in this process, where the backend counts them
        self.compile_clock = compile_clock
        self.epoch_compile_total = 0.0  # of it, during this process's training steps
        self.reporter, self.run_dir, self.rows = reporter, run_dir, rows
        self.images_per_epoch = images_per_epoch
        self.plugin_callbacks, self.signals = plugin_callbacks, signals
        self.restore, self.stop_at_step, self.recipe = restore, stop_at_step, recipe
        self._trained = False

    def on_train_begin(self, logs=None):
        if self.restore is not None:  # after the other callbacks have reset themselves
            checkpoint.restore_callbacks(self.restore.folder, self.restore.state, self.plugin_callbacks,
                                         fresh_patience=self.fresh_patience)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1
        self.t0 = self.t_last = self._shown = time.perf_counter()
        self.c0 = self.c_last = self.compile_clock() if self.compile_clock else 0.0
        self.reporter.epoch_begin(epoch + 1)

    def on_train_batch_end(self, batch, logs=None):
        # Reading a step's logs waits for the device to finish it: done for the
        # progress display a few times a second, and on the epoch's last step (so
        # train_time_s ends when the work does, also where steps run asynchronously).
        now = time.perf_counter()
        last = batch + 1 >= ((self.params or {}).get("steps") or 0)
        if last or now - self._shown >= 0.1:
            values = {k: float(v) for k, v in (logs or {}).items()}
            _check_finite(values, self.epoch, batch + 1, (self.params or {}).get("steps") or 0)
            self.reporter.batch_end(batch + 1, values)
            self._shown = now = time.perf_counter()
        self.t_last = now
        if self.compile_clock is not None:
            self.c_last = self.compile_clock()
        if self.signals.requested and self.stop_at_step:
            sync_weights(self.model)  # JAX: the step's weights are still outside the model
            raise Interrupted()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        train_time = max(self.t_last - self.t0, 1e-9)
        row: dict[str, Any] = {"epoch": epoch + 1}
        row.update({k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"})
        steps = (self.params or {}).get("steps") or 0
        _check_finite(row, epoch + 1, steps, steps)  # before its checkpoint: the last stays finite
        row["learning_rate"] = (logs or {}).get("learning_rate")  # EpochRate's
        compiled = None
        if self.compile_clock is not None:  # measured: what compiled during the steps
            compiled = min(self.c_last - self.c0, train_time)
            self.epoch_compile_total += compiled
        row.update(epoch_time_s=now - self.t0, train_time_s=train_time,
                   images_per_s=self.images_per_epoch / train_time,
                   compiled=not self._trained,  # this process's first epoch compiles the step
                   compile_time_s=compiled)
        self._trained = True
        done = [*self.rows, row]  # counted as done once its checkpoint is complete
        checkpoint.save(self.run_dir, self.model, done, self.plugin_callbacks,
                        self.model.stop_training, self.recipe)
        self.rows.append(row)
        artifacts.write_epoch_files(self.run_dir, self.rows)
        if self.on_row is not None:
            self.on_row(self.rows)
        self.reporter.epoch_end(row)


class Validation(keras.callbacks.Callback):
    """Validation metrics computed on the whole split outside the replicas.

    Put first in the callback list: it adds ``val_*`` entries to the epoch's
    logs, which every later callback (early stopping, the monitor) then sees,
    as with ``fit``'s own validation.
    """

    def __init__(self, data: Prepared, loss, one_hot: bool, metrics: tuple[str, ...], batch: int,
                 backend: Backend):
        super().__init__()
        self.data, self.loss, self.one_hot = data, loss, one_hot
        self.metrics, self.batch, self.backend = metrics, batch, backend

    def on_epoch_end(self, epoch, logs=None):
        d = self.data
        probs = self.backend.predict(self.model, d.x_val.astype("float32"), self.batch)
        result = score(probs, d.y_val, d.class_names, self.loss, self.one_hot, self.metrics)
        if logs is not None:
            logs.update({f"val_{k}": result[k] for k in ("loss", "accuracy", "top_5_accuracy")
                         if k in result})


def _average_at_epoch_end_class():
    import keras

    class AverageAtEpochEnd(keras.callbacks.Callback):
        """After each epoch's last training step the weights become the optimizer's
        moving average (``train.ema_momentum`` where the backend cannot do it inside
        the step), before validation and everything else that epoch's end sees."""

        def __init__(self, steps: int):
            super().__init__()
            self.steps = steps

        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 == self.steps:
                self.model.optimizer.finalize_variable_values(self.model.trainable_variables)

    return AverageAtEpochEnd


def fit(recipe: Recipe, built: Built, data: Prepared, callbacks: list, initial_epoch: int,
        last_epoch: int, signals: Signals) -> None:
    """Train epochs ``initial_epoch + 1 .. last_epoch`` with ``fit`` or the multi-worker loop.

    With several replicas, validation runs outside them (see :class:`Validation`).
    Raises :class:`Interrupted` when a signal stopped training.
    """
    val_ds = built.val_ds
    if recipe.train.ema_momentum is not None and not built.backend.ema_in_step:
        callbacks = [_average_at_epoch_end_class()(built.steps), *callbacks]
    if built.split_batches and data.x_val is not None:
        callbacks = [Validation(data, built.loss, recipe.train.one_hot, recipe.train.metrics,
                                recipe.data.batch_size, built.backend), *callbacks]
        val_ds = None
    if built.role.multi_worker:
        built.backend.fit_multi_worker(
            built.model, built.strategy, built.train_ds, epochs=last_epoch,
            initial_epoch=initial_epoch, steps=built.steps, callbacks=callbacks,
            train_config=recipe.train, global_batch=recipe.data.batch_size,
            stop_requested=lambda: signals.requested)
        if signals.requested:
            raise Interrupted()
        return
    built.backend.fit(built.model, built.train_ds, val_ds, epochs=last_epoch,
                      initial_epoch=initial_epoch, steps=built.steps, callbacks=callbacks,
                      batch_size=recipe.data.batch_size,
                      steps_per_execution=recipe.train.steps_per_execution)


def weights_checksum(model) -> float:
    """A number every worker can print to show they hold the same weights."""
    return float(sum(np.sum(np.asarray(w, np.float64)) for w in model.get_weights()))


def best_epoch(rows: list[dict[str, Any]], callbacks: list) -> tuple[str, int | None, float | None]:
    """The best epoch by the early-stopping monitor (else val_loss, else loss).

    With a callback that chooses the best epoch itself (``chooses_best_epoch``
    and Keras EarlyStopping's ``monitor``, ``mode``, ``best``, ``best_epoch``,
    as the built-in early stopping has), its choice (which honours
    ``min_delta`` and ``start_from_epoch``): the epoch whose weights it restores.
    """
    monitor, mode = None, "min"
    for cb in callbacks:
        if getattr(cb, "chooses_best_epoch", False):  # early stopping, say
            monitor, mode = cb.monitor, cb.mode
            chosen = getattr(cb, "best_epoch", None)
            if isinstance(chosen, int) and 0 <= chosen < len(rows) and cb.best is not None \
                    and math.isfinite(float(cb.best)) and rows[chosen].get(monitor) is not None:
                return monitor, rows[chosen]["epoch"], rows[chosen][monitor]
            break
    if monitor is None or not any(r.get(monitor) is not None for r in rows):
        monitor = "val_loss" if any("val_loss" in r for r in rows) else "loss"
        mode = "min"
    if mode == "auto":
        higher = ("acc", "auc", "precision", "recall")
        mode = "max" if any(h in monitor for h in higher) else "min"
    scored = [(r[monitor], r["epoch"]) for r in rows
              if r.get(monitor) is not None and not math.isnan(r[monitor])]
    if not scored:
        return monitor, None, None
    sign = -1 if mode == "max" else 1
    value, epoch = min(scored, key=lambda t: (sign * t[0], t[1]))  # earliest best
    return monitor, epoch, value
