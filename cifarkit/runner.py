"""One recipe, one run: data -> strategy scope -> model -> fit -> evaluate -> artifacts.

User errors (bad data, missing devices, bad plugin values) are raised before
the run directory exists, so a failed start leaves nothing behind.
"""

from __future__ import annotations

import inspect
import math
import platform
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__, artifacts
from .data import Prepared, Splits, prepare
from .framework import import_framework
from .errors import CifarkitError, DataError, PluginError
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


def _monitor_callback(reporter: Reporter, run_dir: Path, images_per_epoch: int, rows: list):
    """cifarkit's own callback: timing, metrics.csv after every epoch, reporter events."""
    import keras

    class RunMonitor(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = self.t_last = time.perf_counter()
            self.lr = _learning_rate(self.model)
            reporter.epoch_begin(epoch + 1)

        def on_train_batch_end(self, batch, logs=None):
            self.t_last = time.perf_counter()
            reporter.batch_end(batch + 1, {k: float(v) for k, v in (logs or {}).items()})

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            train_time = max(self.t_last - self.t0, 1e-9)
            row: dict[str, Any] = {"epoch": epoch + 1}
            row.update({k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"})
            row["learning_rate"] = self.lr
            row["epoch_time_s"] = now - self.t0
            row["train_time_s"] = train_time
            row["images_per_s"] = images_per_epoch / train_time
            rows.append(row)
            artifacts.write_metrics_csv(run_dir / "metrics.csv", rows)
            reporter.epoch_end(row)

    return RunMonitor()


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


def run(recipe: Recipe, registry: Registry, output: Path,
        reporter: Reporter | None = None) -> RunResult:
    """Train, evaluate and write the run directory for a validated recipe."""
    started = time.perf_counter()
    started_at = _now()
    reporter = reporter or Reporter()
    output = Path(output).absolute()
    artifacts.check_output(output)

    # 1. Data, in NumPy (a bad path fails here, before TensorFlow starts).
    data = load_data(recipe, registry)
    num_classes = len(data.class_names)

    # 2. The framework, the strategy, the model and everything else that can
    #    still fail on user input: all before the run directory exists.
    tf, keras = import_framework()
    keras.utils.set_random_seed(recipe.seed)
    strategy = call_plugin(registry, recipe.strategy, recipe.path)
    if not isinstance(strategy, tf.distribute.Strategy):
        raise TypeError(f"strategy plugin {recipe.strategy.plugin!r} returned "
                        f"{type(strategy).__name__}, not a tf.distribute.Strategy")
    one_hot = recipe.train.loss == "categorical_crossentropy"
    with strategy.scope():
        model = call_plugin(registry, recipe.model, recipe.path, input_shape=data.input_shape,
                            num_classes=num_classes)
        if not isinstance(model, keras.Model):
            raise TypeError(f"model plugin {recipe.model.plugin!r} returned "
                            f"{type(model).__name__}, not a keras.Model")
        optimizer = call_plugin(registry, recipe.train.optimizer, recipe.path,
                                learning_rate=recipe.train.learning_rate)
        if one_hot:
            loss = keras.losses.CategoricalCrossentropy(label_smoothing=recipe.train.label_smoothing)
        else:
            loss = keras.losses.SparseCategoricalCrossentropy()
        metrics: list[Any] = []
        for name in recipe.train.metrics:
            if name == "accuracy":
                metrics.append("accuracy")
            elif name == "top_5_accuracy":
                cls = (keras.metrics.TopKCategoricalAccuracy if one_hot
                       else keras.metrics.SparseTopKCategoricalAccuracy)
                metrics.append(cls(k=5, name="top_5_accuracy"))
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    output_shape = tuple(model.output_shape)
    if output_shape[-1] != num_classes:
        raise PluginError(f"{recipe.model.key}: model {recipe.model.plugin!r} outputs "
                          f"{output_shape[-1]} values, but the dataset has {num_classes} classes")
    augment = [call_plugin(registry, a, recipe.path, seed=recipe.seed + i)
               for i, a in enumerate(recipe.augmentation)]
    batch = recipe.data.batch_size
    steps = recipe.train.steps_per_epoch or math.ceil(len(data.x_train) / batch)
    train_ds, val_ds, test_ds = make_datasets_for(recipe, data, num_classes, one_hot, augment)
    planned = output / artifacts.run_dir_name(recipe.name)
    plugin_callbacks = [call_plugin(registry, c, recipe.path, run_dir=planned) for c in recipe.callbacks]

    # 3. The run directory.
    run_dir = artifacts.create_run_dir(output, recipe.name)
    if run_dir != planned:  # another run took the name first: rebuild with the real path
        plugin_callbacks = [call_plugin(registry, c, recipe.path, run_dir=run_dir) for c in recipe.callbacks]
    artifacts.atomic_write(run_dir / "recipe.toml", recipe.dumps())
    reporter.attach_log(run_dir / "run.log")
    summary: dict[str, Any] = {
        "status": "running",
        "recipe": recipe.name,
        "recipe_file": str(recipe.path),
        "overrides": list(recipe.overrides),
        "run_dir": str(run_dir),
        "started_at": started_at,
        "dataset": recipe.data.dataset.plugin,
        "class_names": data.class_names,
        "train_examples": len(data.x_train),
        "validation_examples": 0 if data.x_val is None else len(data.x_val),
        "test_examples": len(data.x_test),
        "model": recipe.model.plugin,
        "parameters": int(model.count_params()),
        "strategy": recipe.strategy.plugin,
        "replicas": int(strategy.num_replicas_in_sync),
        "epochs_planned": recipe.train.epochs,
        "batch_size": batch,
        "versions": _versions(),
    }
    artifacts.write_json(run_dir / "summary.json", summary)
    reporter.start({
        "recipe": recipe.name,
        "data": f"{recipe.data.dataset.plugin}: {len(data.x_train):,} train / "
                f"{summary['validation_examples']:,} validation / {len(data.x_test):,} test, "
                f"{num_classes} classes",
        "model": f"{recipe.model.plugin} ({summary['parameters']:,} parameters)",
        "strategy": f"{recipe.strategy.plugin} ({summary['replicas']} replica"
                    f"{'s' if summary['replicas'] != 1 else ''})",
        "augmentation": ", ".join(a.plugin for a in recipe.augmentation) or "none",
        "training": f"{recipe.train.epochs} epochs x {steps} steps, batch {batch}, "
                    f"{recipe.train.optimizer.plugin} lr {recipe.train.learning_rate:g}",
        "run directory": str(run_dir),
    })

    rows: list[dict[str, Any]] = []
    images_per_epoch = (len(data.x_train) if recipe.train.steps_per_epoch is None
                        else recipe.train.steps_per_epoch * batch)
    monitor = _monitor_callback(reporter, run_dir, images_per_epoch, rows)
    try:
        reporter.train_begin(recipe.train.epochs, steps, batch)
        model.fit(train_ds, validation_data=val_ds, epochs=recipe.train.epochs,
                  steps_per_epoch=recipe.train.steps_per_epoch,
                  callbacks=[*plugin_callbacks, monitor], shuffle=False, verbose=0)
        reporter.stop_live()
        # 4. The test split, touched once.
        test = model.evaluate(test_ds, return_dict=True, verbose=0)
        artifacts.save_model(model, run_dir / "model.keras")
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        summary.update(status=status, finished_at=_now(), epochs_run=len(rows),
                       wall_time_s=time.perf_counter() - started,
                       error=f"{type(exc).__name__}: {exc}")
        reporter.write_log(f"run {status}:\n" + "".join(traceback.format_exception(exc)))
        artifacts.write_json(run_dir / "summary.json", summary)
        if rows:
            artifacts.plot_curves(rows, run_dir)
        reporter.close()
        raise

    monitor_name, best_epoch, best_value = _best(rows, plugin_callbacks)
    artifacts.plot_curves(rows, run_dir, best_epoch)
    measured = rows[1:] if len(rows) > 1 else rows
    train_time = sum(r["train_time_s"] for r in measured)
    summary.update({
        "status": "completed",
        "finished_at": _now(),
        "test_accuracy": float(test.get("accuracy", float("nan"))),
        "test_loss": float(test["loss"]),
        "test_metrics": {k: float(v) for k, v in test.items()},
        "epochs_run": len(rows),
        "stopped_early": len(rows) < recipe.train.epochs,
        "best_epoch": best_epoch,
        "best_monitor": monitor_name,
        "best_value": best_value,
        "wall_time_s": time.perf_counter() - started,
        "train_images_per_s": images_per_epoch * len(measured) / train_time if train_time else None,
        "train_images_per_s_note": ("steady state: the first epoch (graph tracing) is excluded"
                                    if len(rows) > 1 else "one epoch, including graph tracing"),
    })
    artifacts.write_json(run_dir / "summary.json", summary)
    reporter.finish(summary)
    reporter.close()
    return RunResult(run_dir, summary)


def make_datasets_for(recipe: Recipe, data: Prepared, num_classes: int, one_hot: bool, augment):
    from .pipeline import make_datasets

    return make_datasets(data, recipe.data.batch_size, num_classes, one_hot, augment,
                         seed=recipe.seed, shuffle=recipe.data.shuffle,
                         repeat=recipe.train.steps_per_epoch is not None)
