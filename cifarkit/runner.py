"""One recipe, one run: data -> strategy scope -> model -> fit -> evaluate -> artifacts.

User errors (bad data, missing devices, bad plugin values) are raised before
the run directory exists, so a failed start leaves nothing behind.
"""

from __future__ import annotations

import inspect
import io
import json
import math
import os
import platform
import shlex
import shutil
import signal
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from . import __version__, artifacts, checkpoint
from .data import Prepared, Splits, prepare
from .errors import CifarkitError, DataError, OutputError, PluginError, RecipeError
from .distributed import custom_fit, is_multi_worker, weights_checksum, worker_role
from .distributed import predict as predict_locally
from .evaluation import make_loss, plot_confusion, predict_tta, score
from .framework import import_framework
from .recipe import PluginCall, Recipe
from .registry import Registry
from .reporter import Reporter


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]


def call_plugin(registry: Registry, call: PluginCall, recipe_path: Path | None = None,
                **injected: Any) -> Any:
    """Build a plugin's object from its validated parameters plus injected values.

    A :class:`CifarkitError` raised by the factory is re-raised naming the
    recipe file and key; any other exception is a bug in the plugin and
    propagates with its traceback.
    """
    info = registry.get(call.kind, call.plugin)
    accepted = inspect.signature(info.factory).parameters
    kwargs = {k: v for k, v in injected.items() if k in accepted}
    try:
        return info.factory(**call.params, **kwargs)
    except CifarkitError as exc:
        where = f"{recipe_path}: " if recipe_path else ""
        raise type(exc)(f"{where}{call.key}: {exc}") from None


def load_data(recipe: Recipe, registry: Registry) -> Prepared:
    splits = call_plugin(registry, recipe.data.dataset, recipe.path)
    if not isinstance(splits, Splits):
        raise TypeError(f"dataset plugin {recipe.data.dataset.plugin!r} returned "
                        f"{type(splits).__name__}, not cifarkit.data.Splits")
    splits.check(f"dataset {recipe.data.dataset.plugin!r}")
    try:
        return prepare(splits, recipe.data.validation_split, recipe.data.limit, recipe.seed)
    except DataError as exc:
        raise DataError(f"{recipe.path}: data.validation_split: {exc}") from None


def _versions() -> dict[str, str]:
    import keras
    import numpy
    import tensorflow as tf

    return {"cifarkit": __version__, "keras": keras.__version__, "tensorflow": tf.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _learning_rate(model) -> float | None:
    try:
        import keras

        return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    except Exception:
        return None


def _best(rows: list[dict[str, Any]], callbacks: list) -> tuple[str, int | None, float | None]:
    """The best epoch by the early-stopping monitor (else val_loss, else loss)."""
    import keras

    monitor, mode = None, "min"
    for cb in callbacks:
        if isinstance(cb, keras.callbacks.EarlyStopping):
            monitor, mode = cb.monitor, cb.mode
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


class Interrupted(Exception):
    """Raised inside ``fit`` after the step that was running when SIGINT arrived."""


class _Signals:
    """First SIGINT/SIGTERM: stop after the current step. Second: exit at once."""

    def __init__(self, on_second):
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
            self.on_second()
            os._exit(130)
        self.requested = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _monitor_callback(reporter: Reporter, run_dir: Path, images_per_epoch: int, rows: list,
                      plugin_callbacks: list, signals: _Signals, restore: tuple | None,
                      stop_at_step: bool = True):
    """cifarkit's own callback: timing, per-epoch files and checkpoint, reporter, Ctrl-C."""
    import keras

    class RunMonitor(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            if restore is not None:  # after the other callbacks have reset themselves
                checkpoint.restore_callbacks(*restore, plugin_callbacks)

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = self.t_last = time.perf_counter()
            self.lr = _learning_rate(self.model)
            reporter.epoch_begin(epoch + 1)

        def on_train_batch_end(self, batch, logs=None):
            self.t_last = time.perf_counter()
            if batch == 0:  # the rate the epoch's first step used (a schedule may set it per step)
                self.lr = _learning_rate(self.model)
            reporter.batch_end(batch + 1, {k: float(v) for k, v in (logs or {}).items()})
            if signals.requested and stop_at_step:
                raise Interrupted()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            train_time = max(self.t_last - self.t0, 1e-9)
            row: dict[str, Any] = {"epoch": epoch + 1}
            row.update({k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"})
            row["learning_rate"] = self.lr
            row.update({k: v for k, v in (("epoch_time_s", now - self.t0),
                                          ("train_time_s", train_time),
                                          ("images_per_s", images_per_epoch / train_time))})
            rows.append(row)
            checkpoint.save(run_dir, self.model, rows, plugin_callbacks, self.model.stop_training)
            _write_epoch_files(run_dir, rows)
            reporter.epoch_end(row)

    return RunMonitor()


TIMING = ("epoch_time_s", "train_time_s", "images_per_s")


def _write_epoch_files(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """metrics.csv (deterministic values only) and timing.csv (seconds, images/s)."""
    artifacts.write_metrics_csv(run_dir / "metrics.csv",
                                [{k: v for k, v in r.items() if k not in TIMING} for r in rows])
    artifacts.write_metrics_csv(run_dir / "timing.csv",
                                [{"epoch": r["epoch"], **{k: r.get(k) for k in TIMING}} for r in rows])


def resume_command(run_dir: Path) -> str:
    return f"cifarkit run --resume {shlex.quote(str(run_dir))}"


def run(recipe: Recipe, registry: Registry, output: Path,
        reporter: Reporter | None = None, resume: Path | None = None) -> RunResult:
    """Train, evaluate and write the run directory for a validated recipe.

    With ``resume`` (an existing run directory whose ``recipe.toml`` is
    ``recipe``), continue from its last completed epoch instead.
    """
    started = time.perf_counter()
    reporter = reporter or Reporter()
    output = Path(output).absolute()
    previous: dict[str, Any] = {}
    if resume is not None:
        previous = read_summary(resume)
    else:
        artifacts.check_output(output)

    # 1. Data, in NumPy (a bad path fails here, before TensorFlow starts).
    data = load_data(recipe, registry)
    num_classes = len(data.class_names)

    # 2. The framework, the strategy, the model and everything else that can
    #    still fail on user input: all before the run directory exists.
    tf, keras = import_framework()
    if recipe.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(recipe.seed)
    strategy = call_plugin(registry, recipe.strategy, recipe.path)
    if not isinstance(strategy, tf.distribute.Strategy):
        raise TypeError(f"strategy plugin {recipe.strategy.plugin!r} returned "
                        f"{type(strategy).__name__}, not a tf.distribute.Strategy")
    multi = is_multi_worker(strategy)
    chief, task_index, workers = worker_role(strategy) if multi else (True, 0, 1)
    if multi and resume is not None:
        raise OutputError(f"{resume}: --resume is not supported for multi-worker runs; "
                          "start the run again")
    if not chief:  # other workers print nothing and write only to a temporary folder
        reporter = Reporter(Console(file=io.StringIO()))
    one_hot = recipe.train.loss == "categorical_crossentropy"
    saved = checkpoint.find(resume) if resume is not None else None
    state = checkpoint.load_state(saved) if saved is not None else None
    replicas = int(strategy.num_replicas_in_sync)
    learning_rate = recipe.train.learning_rate * (
        replicas if recipe.train.learning_rate_scaling == "linear" else 1)
    with strategy.scope():
        model = build_model(registry, recipe, data.input_shape, num_classes, data.x_train)
        optimizer = call_plugin(registry, recipe.train.optimizer, recipe.path,
                                learning_rate=learning_rate)
        loss = make_loss(recipe.train.loss, recipe.train.label_smoothing)
        metrics: list[Any] = []
        for name in recipe.train.metrics:
            if name == "accuracy":
                metrics.append("accuracy")
            elif name == "top_5_accuracy":
                cls = (keras.metrics.TopKCategoricalAccuracy if one_hot
                       else keras.metrics.SparseTopKCategoricalAccuracy)
                metrics.append(cls(k=5, name="top_5_accuracy"))
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics,
                      jit_compile=recipe.train.jit_compile)
        if saved is not None:
            model.optimizer.build(model.trainable_variables)
            model.load_weights(saved / "weights.weights.h5")
        _check_model(model, recipe, data.input_shape, num_classes)
    augment = [call_plugin(registry, a, recipe.path, seed=recipe.seed + i)
               for i, a in enumerate(recipe.augmentation)]
    for call, layer in zip(recipe.augmentation, augment):
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(f"augmentation plugin {call.plugin!r} returned {type(layer).__name__}, "
                            "not a keras.layers.Layer")
    batch = recipe.data.batch_size
    # With several replicas every batch must split evenly: full training batches
    # only, and validation/test predictions outside the replicas (see below).
    split_batches = replicas > 1
    if split_batches and batch % replicas:
        raise RecipeError(f"{recipe.path}: data.batch_size: {batch} does not split evenly over "
                          f"{replicas} replicas; use a multiple of {replicas}")
    if split_batches and len(data.x_train) < batch:
        raise DataError(f"{recipe.path}: data.batch_size: {batch} is larger than the "
                        f"{len(data.x_train)} training examples; with {replicas} replicas "
                        "every batch must be full")
    steps = recipe.train.steps_per_epoch or (len(data.x_train) // batch if split_batches
                                             else math.ceil(len(data.x_train) / batch))
    train_ds, val_ds, _ = make_datasets_for(recipe, data, num_classes, one_hot, augment,
                                                  repeat=multi, drop_remainder=split_batches)

    # 3. The run directory.
    def build_callbacks(directory: Path) -> list:
        built = [call_plugin(registry, c, recipe.path, run_dir=directory, learning_rate=learning_rate)
                 for c in recipe.callbacks]
        for call, cb in zip(recipe.callbacks, built):
            if not isinstance(cb, keras.callbacks.Callback):
                raise TypeError(f"callback plugin {call.plugin!r} returned {type(cb).__name__}, "
                                "not a keras.callbacks.Callback")
        return built

    if not chief:
        run_dir = Path(tempfile.mkdtemp(prefix=f"cifarkit-worker{task_index}-"))
        plugin_callbacks = build_callbacks(run_dir)
        artifacts.atomic_write(run_dir / "recipe.toml", recipe.dumps())
    elif resume is not None:
        run_dir = resume
        plugin_callbacks = build_callbacks(run_dir)
    else:
        planned = output / artifacts.run_dir_name(recipe.name)
        plugin_callbacks = build_callbacks(planned)  # may fail: nothing written yet
        run_dir = artifacts.create_run_dir(output, recipe.name)
        if run_dir != planned:  # another run took the name first: rebuild with the real path
            plugin_callbacks = build_callbacks(run_dir)
        artifacts.atomic_write(run_dir / "recipe.toml", recipe.dumps())
    reporter.attach_log(run_dir / "run.log")
    rows: list[dict[str, Any]] = list(state["rows"]) if state else []
    prior_time = previous.get("wall_time_s") or sum(r.get("epoch_time_s", 0.0) for r in rows)
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
        "parameters": int(model.count_params()),
        "strategy": recipe.strategy.plugin,
        "replicas": replicas,
        "workers": workers,
        "learning_rate": learning_rate,
        "mixed_precision": recipe.train.mixed_precision,
        "epochs_planned": recipe.train.epochs,
        "batch_size": batch,
        "deterministic": recipe.train.deterministic,
        "versions": _versions(),
    }
    if resume is not None:
        summary.update(resumed=True, resume_count=int(previous.get("resume_count", 0)) + 1,
                       resumed_from_epoch=len(rows))
    artifacts.write_json(run_dir / "summary.json", summary)
    if rows:
        _write_epoch_files(run_dir, rows)  # the checkpoint's history is the truth
    reporter.start({
        "recipe": recipe.name,
        "data": f"{recipe.data.dataset.plugin}: {len(data.x_train):,} train / "
                f"{summary['validation_examples']:,} validation / {len(data.x_test):,} test, "
                f"{num_classes} classes",
        "model": f"{recipe.model.plugin} ({summary['parameters']:,} parameters)",
        "strategy": f"{recipe.strategy.plugin} ({replicas} replica{'s' if replicas != 1 else ''}"
                    + (f", {workers} workers, this is the chief" if multi else "") + ")",
        "augmentation": ", ".join(a.plugin for a in recipe.augmentation) or "none",
        "training": f"{recipe.train.epochs} epochs x {steps} steps, batch {batch}, "
                    f"{recipe.train.optimizer.plugin} lr {learning_rate:g}"
                    + (f", {recipe.train.mixed_precision}" if recipe.train.mixed_precision != "float32"
                       else ""),
        "run directory": str(run_dir),
        **({"resuming": f"after epoch {len(rows)} of {recipe.train.epochs}"}
           if resume is not None else {}),
    })

    def finish_interrupted() -> None:
        summary.update(status="interrupted", finished_at=_now(), epochs_run=len(rows),
                       wall_time_s=prior_time + time.perf_counter() - started,
                       resume_command=resume_command(run_dir))
        artifacts.write_json(run_dir / "summary.json", summary)

    images_per_epoch = (len(data.x_train) if recipe.train.steps_per_epoch is None and not split_batches
                        else steps * batch)
    try:
        with _Signals(on_second=finish_interrupted) as signals:
            monitor = _monitor_callback(reporter, run_dir, images_per_epoch, rows, plugin_callbacks,
                                        signals, (saved, state) if saved is not None else None,
                                        stop_at_step=not multi)
            reporter.train_begin(recipe.train.epochs, steps, batch)
            # Epochs already done (or an early stop already decided) run no epoch
            # but still give callbacks their begin/end (restoring best weights).
            last = len(rows) if state and state["stop_training"] else recipe.train.epochs
            validator = []
            if split_batches and data.x_val is not None:  # several replicas: see _validation_callback
                validator = [_validation_callback(data, loss, one_hot, recipe.train.metrics, batch)]
                val_ds = None
            if multi:
                custom_fit(model, strategy, train_ds, steps=steps, epochs=last,
                           initial_epoch=len(rows), global_batch=batch, loss=recipe.train.loss,
                           label_smoothing=recipe.train.label_smoothing,
                           metrics=recipe.train.metrics,
                           callbacks=[*validator, *plugin_callbacks, monitor],
                           jit_compile=recipe.train.jit_compile is True,
                           stop_requested=lambda: signals.requested)
                if signals.requested:
                    raise Interrupted()
            else:
                model.fit(train_ds, validation_data=val_ds, epochs=last, initial_epoch=len(rows),
                          steps_per_epoch=steps if split_batches else recipe.train.steps_per_epoch,
                          callbacks=[*validator, *plugin_callbacks, monitor], shuffle=False,
                          verbose=0)
        reporter.stop_live()
        # 4. The test split, touched once.
        if split_batches:
            predict = lambda x: predict_locally(model, x, batch)  # noqa: E731
        else:
            predict = lambda x: model.predict(x, batch_size=batch, verbose=0)  # noqa: E731
        probs, plain = predict_tta(predict, data.x_test.astype("float32"), recipe.train.tta)
        test = score(probs, data.y_test, data.class_names, loss, one_hot, recipe.train.metrics)
        if recipe.train.tta != "none":
            test["accuracy_without_tta"] = float((plain.argmax(axis=1) == data.y_test).mean())
        artifacts.save_model(model, run_dir / "model.keras")
    except Interrupted:
        reporter.stop_live()
        artifacts.save_model(model, run_dir / "model.keras")
        if rows:
            artifacts.plot_curves(rows, run_dir)
        finish_interrupted()
        reporter.note(f"interrupted during epoch {len(rows) + 1}: model.keras holds the current "
                      f"weights; {len(rows)} completed epoch(s) are checkpointed. Resume with:")
        reporter.line(f"  {resume_command(run_dir)}")
        reporter.close()
        if not chief:
            shutil.rmtree(run_dir, ignore_errors=True)
        return RunResult(run_dir, summary)
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        summary.update(status=status, finished_at=_now(), epochs_run=len(rows),
                       wall_time_s=prior_time + time.perf_counter() - started,
                       error=f"{type(exc).__name__}: {exc}", resume_command=resume_command(run_dir))
        reporter.write_log(f"run {status}:\n" + "".join(traceback.format_exception(exc)))
        artifacts.write_json(run_dir / "summary.json", summary)
        if rows:
            artifacts.plot_curves(rows, run_dir)
        reporter.close()
        if not chief:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise

    monitor_name, best_epoch, best_value = _best(rows, plugin_callbacks)
    artifacts.plot_curves(rows, run_dir, best_epoch)
    plot_confusion(test["confusion_matrix"], data.class_names, run_dir / "confusion_matrix.png")
    measured = rows[1:] if len(rows) > 1 else rows
    train_time = sum(r["train_time_s"] for r in measured)
    summary.update({
        "status": "completed",
        "finished_at": _now(),
        "test_accuracy": test["accuracy"],
        **({"test_tta": recipe.train.tta, "test_accuracy_without_tta": test["accuracy_without_tta"]}
           if recipe.train.tta != "none" else {}),
        "test_loss": test["loss"],
        "test_metrics": {k: v for k, v in test.items() if isinstance(v, float)},
        "per_class_accuracy": test["per_class_accuracy"],
        "epochs_run": len(rows),
        "stopped_early": len(rows) < recipe.train.epochs,
        "best_epoch": best_epoch,
        "best_monitor": monitor_name,
        "best_value": best_value,
        "wall_time_s": prior_time + time.perf_counter() - started,
        "train_images_per_s": images_per_epoch * len(measured) / train_time if train_time else None,
        "train_images_per_s_note": ("steady state: the first epoch (graph tracing) is excluded"
                                    if len(rows) > 1 else "one epoch, including graph tracing"),
    })
    summary.pop("resume_command", None)
    summary.pop("error", None)
    if multi:
        summary["weights_checksum"] = weights_checksum(model)
    artifacts.write_json(run_dir / "summary.json", summary)
    checkpoint.remove(run_dir)
    reporter.finish(summary)
    reporter.close()
    if not chief:
        print(f"worker {task_index} of {workers} finished: test_accuracy={summary['test_accuracy']:.6f} "
              f"test_loss={summary['test_loss']:.6f} weights_checksum={summary['weights_checksum']:.6f} "
              "(the chief, worker 0, writes the run directory)", flush=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    return RunResult(run_dir, summary)


def build_model(registry: Registry, recipe: Recipe, input_shape: tuple, num_classes: int,
                x_train: np.ndarray):
    """The recipe's model, built under its dtype policy from (up to 5,000 of) ``x_train``
    as ``sample_images``: a built keras.Model with float32 output."""
    _, keras = import_framework()
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(recipe.train.mixed_precision)
    try:
        model = call_plugin(registry, recipe.model, recipe.path, input_shape=input_shape,
                            num_classes=num_classes, sample_images=x_train[:5000])
    finally:
        keras.config.set_dtype_policy(previous_policy)
    if not isinstance(model, keras.Model):
        raise TypeError(f"model plugin {recipe.model.plugin!r} returned "
                        f"{type(model).__name__}, not a keras.Model")
    if not model.built:  # e.g. a Sequential without keras.Input: build it on one image
        model(np.zeros((1, *input_shape), np.float32), training=False)
    return _float32_output(model, keras)


def _check_model(model, recipe: Recipe, input_shape: tuple, num_classes: int) -> None:
    """The model contract, checked on one blank image: width and probabilities."""
    probe = np.asarray(model(np.zeros((1, *input_shape), np.float32), training=False), np.float32)
    where = f"{recipe.path}: {recipe.model.key}: model {recipe.model.plugin!r}"
    if probe.ndim != 2 or probe.shape[-1] != num_classes:
        raise PluginError(f"{where} outputs shape {probe.shape[1:]}, but the dataset has "
                          f"{num_classes} classes (expected ({num_classes},))")
    if probe.min() < -1e-6 or abs(float(probe.sum()) - 1.0) > 1e-2:
        raise PluginError(f"{where} must output class probabilities (end in a softmax); "
                          f"its outputs sum to {float(probe.sum()):.3g}")


def _validation_callback(data: Prepared, loss, one_hot: bool, metrics: tuple[str, ...],
                         batch: int):
    """Validation metrics computed on the whole split outside the replicas.

    Put first in the callback list: it adds ``val_*`` entries to the epoch's
    logs, which every later callback (early stopping, the monitor) then sees,
    as with ``fit``'s own validation.
    """
    import keras

    class Validation(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            probs = predict_locally(self.model, data.x_val.astype("float32"), batch)
            result = score(probs, data.y_val, data.class_names, loss, one_hot, metrics)
            if logs is not None:
                logs.update({f"val_{k}": result[k] for k in ("loss", "accuracy", "top_5_accuracy")
                             if k in result})

    return Validation()


def _float32_output(model, keras):
    """Keep the model's output in float32 under mixed precision, as Keras recommends."""
    output = model.outputs[0] if getattr(model, "outputs", None) else None
    if output is None or keras.backend.standardize_dtype(output.dtype) == "float32":
        return model
    cast = keras.layers.Activation("linear", dtype="float32", name="float32_output")(output)
    return keras.Model(model.inputs, cast, name=model.name)


def read_summary(run_dir: Path) -> dict[str, Any]:
    """A run directory's summary.json, or a user error saying what is wrong."""
    path = Path(run_dir) / "summary.json"
    if not Path(run_dir).is_dir():
        raise OutputError(f"{run_dir}: not a run directory (not found)")
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        raise OutputError(f"{run_dir}: not a run directory (no summary.json)") from None
    except (OSError, ValueError) as exc:
        raise OutputError(f"{path}: unreadable ({exc})") from None
    if not isinstance(summary, dict):
        raise OutputError(f"{path}: not a cifarkit summary")
    return summary


def make_datasets_for(recipe: Recipe, data: Prepared, num_classes: int, one_hot: bool, augment,
                      repeat: bool = False, drop_remainder: bool = False):
    from .pipeline import make_datasets

    return make_datasets(data, recipe.data.batch_size, num_classes, one_hot, augment,
                         seed=recipe.seed, shuffle=recipe.data.shuffle,
                         repeat=repeat or recipe.train.steps_per_epoch is not None,
                         drop_remainder=drop_remainder)
