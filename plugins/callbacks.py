"""Built-in training callbacks: thin, validated wrappers around keras.callbacks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import cifarkit
from cifarkit import PluginError, Range

Mode = Literal["auto", "min", "max"]


def _inside(run_dir: Path, name: str, what: str) -> Path:
    """``run_dir / name``, refusing names that escape the run directory or that cifarkit
    writes itself (recipe.toml, checkpoint/, ...)."""
    return cifarkit.run_file(run_dir, name, what)


def early_stopping(monitor: str = "val_loss",
                   patience: Annotated[int, Range(0)] = 10,
                   min_delta: Annotated[float, Range(0)] = 0.0,
                   mode: Mode = "auto",
                   restore_best_weights: bool = False,
                   start_from_epoch: Annotated[int, Range(0)] = 0,
                   baseline: float | None = None):
    """Stop training when a monitored metric has stopped improving.

    Args:
        monitor: metric to watch, e.g. "val_loss" or "val_accuracy".
        patience: epochs without improvement before stopping.
        min_delta: smallest change that counts as an improvement.
        mode: "min", "max", or "auto" (inferred from the metric's name).
        restore_best_weights: at the end, put back the weights of the best epoch.
        start_from_epoch: epochs to wait before watching at all.
        baseline: a value the metric must beat.
    """
    from cifarkit_plugins._callbacks import EarlyStopping

    return EarlyStopping(
        monitor=monitor, patience=patience, min_delta=min_delta, mode=mode,
        restore_best_weights=restore_best_weights, start_from_epoch=start_from_epoch,
        baseline=baseline)


def model_checkpoint(run_dir: Path,
                     filename: str = "checkpoints/best.keras",
                     monitor: str = "val_loss",
                     save_best_only: bool = True,
                     save_weights_only: bool = False,
                     mode: Mode = "auto"):
    """Save the model (or its weights) during training, inside the run directory.

    Args:
        filename: path relative to the run directory; may use Keras's
            placeholders such as "{epoch:03d}". Must end in ".keras", or in
            ".weights.h5" with save_weights_only.
        monitor: metric that decides which model is best.
        save_best_only: keep only the best model so far.
        save_weights_only: save weights only.
        mode: "min", "max", or "auto".
    """
    suffix = ".weights.h5" if save_weights_only else ".keras"
    if not filename.endswith(suffix):
        raise PluginError(f"model_checkpoint: filename {filename!r} must end in {suffix!r}"
                          + (" (save_weights_only = true)" if save_weights_only else ""))
    path = _inside(run_dir, filename, "model_checkpoint: filename")

    from cifarkit_plugins._callbacks import DirCreatingCheckpoint

    return DirCreatingCheckpoint(str(path), monitor=monitor, save_best_only=save_best_only,
                                 save_weights_only=save_weights_only, mode=mode)


def csv_logger(run_dir: Path, filename: str = "training_log.csv", separator: str = ",",
               append: bool = False):
    """Stream each epoch's logs to a CSV file in the run directory (Keras's CSVLogger).

    cifarkit always writes ``metrics.csv``; use this for an extra file or
    another separator.

    Args:
        filename: path relative to the run directory.
        separator: field separator.
        append: append to an existing file instead of overwriting it.
    """
    import keras

    return keras.callbacks.CSVLogger(str(_inside(run_dir, filename, "csv_logger: filename")),
                                     separator=separator, append=append)


def reduce_lr_on_plateau(monitor: str = "val_loss",
                         factor: Annotated[float, Range(0, 1, min_inclusive=False,
                                                        max_inclusive=False)] = 0.1,
                         patience: Annotated[int, Range(0)] = 10,
                         min_delta: Annotated[float, Range(0)] = 1e-4,
                         cooldown: Annotated[int, Range(0)] = 0,
                         min_lr: Annotated[float, Range(0)] = 0.0,
                         mode: Mode = "auto"):
    """Multiply the learning rate by ``factor`` when a metric stops improving.

    Args:
        monitor: metric to watch.
        factor: multiplier for the learning rate (between 0 and 1).
        patience: epochs without improvement before reducing.
        min_delta: smallest change that counts as an improvement.
        cooldown: epochs to wait after a reduction before watching again.
        min_lr: lower bound on the learning rate.
        mode: "min", "max", or "auto".
    """
    from cifarkit_plugins._callbacks import ReduceLROnPlateau

    return ReduceLROnPlateau(
        monitor=monitor, factor=factor, patience=patience, min_delta=min_delta,
        cooldown=cooldown, min_lr=min_lr, mode=mode)


def tensorboard(run_dir: Path, log_dir: str = "tensorboard",
                histogram_freq: Annotated[int, Range(0)] = 0,
                write_graph: bool = True,
                update_freq: Literal["epoch", "batch"] = "epoch"):
    """Write TensorBoard logs inside the run directory (view with ``tensorboard --logdir``).

    Args:
        log_dir: directory relative to the run directory.
        histogram_freq: epochs between weight histograms (0: none).
        write_graph: write the model graph.
        update_freq: "epoch" or "batch".

    On the JAX backend the same files are written without TensorFlow (scalars,
    histograms and the model's conceptual graph; no op-level graph).
    """
    import keras

    return keras.callbacks.TensorBoard(
        log_dir=str(_inside(run_dir, log_dir, "tensorboard: log_dir")),
        histogram_freq=histogram_freq, write_graph=write_graph, update_freq=update_freq,
        profile_batch=0)


def tensorboard_jax(run_dir: Path, log_dir: str = "tensorboard",
                    histogram_freq: Annotated[int, Range(0)] = 0,
                    write_graph: bool = True,
                    update_freq: Literal["epoch", "batch"] = "epoch"):
    """Write TensorBoard logs inside the run directory, without TensorFlow (JAX backend).

    Args:
        log_dir: directory relative to the run directory.
        histogram_freq: epochs between weight histograms (0: none).
        write_graph: write the model's conceptual graph (no op-level graph).
        update_freq: "epoch" or "batch".
    """
    from cifarkit_plugins._tensorboard import EventWriter

    return EventWriter(str(_inside(run_dir, log_dir, "tensorboard: log_dir")), histogram_freq,
                       write_graph, update_freq)


def warmup_decay(learning_rate: float,
                 start: Annotated[float, Range(0)] = 0.2,
                 peak_at: Annotated[float, Range(0, 1)] = 0.23,
                 end: Annotated[float, Range(0)] = 0.07):
    """Piecewise-linear learning-rate schedule over the whole run, set every step.

    The learning rate rises linearly from ``start`` x lr to lr over the first
    ``peak_at`` of all training steps, then falls linearly to ``end`` x lr at
    the last step (lr is ``train.learning_rate``). With the defaults this is
    the triangular schedule of KellerJordan/cifar10-airbench. The schedule is
    a function of the step alone, so a resumed run continues it where the
    checkpoint left off.

    Args:
        start: multiplier of the learning rate at the first step.
        peak_at: fraction of training (0-1) at which the full learning rate is reached.
        end: multiplier of the learning rate at the last step.
    """
    from cifarkit_plugins._callbacks import ScheduleCallback, WarmupDecaySchedule

    return ScheduleCallback("warmup_decay", lambda total: WarmupDecaySchedule(
        learning_rate, start, peak_at, end, total))


def cosine_decay(learning_rate: float,
                 warmup: Annotated[float, Range(0, 1, max_inclusive=False)] = 0.0,
                 warmup_start: Annotated[float, Range(0)] = 0.0,
                 end: Annotated[float, Range(0, 1)] = 0.0):
    """Cosine decay of the learning rate over the whole run, with an optional linear
    warmup: Keras's ``CosineDecay``, set every step.

    Over the first ``warmup`` of all training steps the rate rises linearly from
    ``warmup_start`` x lr to lr; over the rest it falls along half a cosine to
    ``end`` x lr at the last step (lr is ``train.learning_rate``). A function
    of the step alone, so a resumed run continues it exactly.

    Args:
        warmup: fraction of training (0-1) spent warming up; 0: none.
        warmup_start: multiplier of the learning rate at the first warmup step.
        end: multiplier of the learning rate at the end (Keras's ``alpha``).
    """
    from cifarkit_plugins._callbacks import CosineDecaySchedule, ScheduleCallback

    def make(total):
        warm = int(round(warmup * total))
        if warm == 0:
            return CosineDecaySchedule(learning_rate, max(1, total - 1), alpha=end)
        return CosineDecaySchedule(learning_rate * warmup_start, max(1, total - 1 - warm),
                                   alpha=end, warmup_target=learning_rate, warmup_steps=warm)

    return ScheduleCallback("cosine_decay", make)


def one_cycle(learning_rate: float,
              pct_start: Annotated[float, Range(0, 1, min_inclusive=False,
                                                max_inclusive=False)] = 0.3,
              div_factor: Annotated[float, Range(1)] = 25.0,
              final_div_factor: Annotated[float, Range(1)] = 1e4):
    """The one-cycle policy (Smith and Topin), as PyTorch's ``OneCycleLR`` with cosine
    annealing, over the whole run, set every step.

    The rate rises from lr / ``div_factor`` to lr (``train.learning_rate``) over
    the first ``pct_start`` of all training steps, then falls to lr /
    (``div_factor`` x ``final_div_factor``) at the last step, both along a
    cosine. A function of the step alone, so a resumed run continues it exactly.

    Args:
        pct_start: fraction of training (0-1) spent rising.
        div_factor: the first rate is lr / div_factor.
        final_div_factor: the last rate is the first / final_div_factor.
    """
    from cifarkit_plugins._callbacks import OneCycleSchedule, ScheduleCallback

    return ScheduleCallback("one_cycle", lambda total: OneCycleSchedule(
        learning_rate, total, pct_start, div_factor, final_div_factor))


def lookahead(start_epoch: Annotated[int, Range(0)] = 3,
              every: Annotated[int, Range(1)] = 5,
              decay: Annotated[float, Range(0, 1)] = 0.95,
              decay_power: Annotated[float, Range(0)] = 3.0):
    """Lookahead weight averaging, as in KellerJordan/cifar10-airbench.

    From epoch ``start_epoch`` (counted from 0), every ``every`` steps, an
    exponential moving average of all model weights (BatchNorm statistics
    included) is updated and copied back into the model. The average's
    momentum is ``decay ** every`` scaled by ``progress ** decay_power``
    (progress: fraction of training done), so it moves fast early and
    averages strongly at the end. At each epoch's end the model holds the
    average, which is what validation, checkpoints and model.keras see. On
    the JAX backend the update runs inside the compiled training step.

    Args:
        start_epoch: first epoch (0-based) that averages.
        every: steps between updates.
        decay: per-step decay of the average.
        decay_power: how sharply the averaging strengthens towards the end.
    """
    from cifarkit_plugins._callbacks import Lookahead

    return Lookahead(start_epoch, every, decay, decay_power)


@cifarkit.hookimpl
def register_callbacks(register):
    register(early_stopping)
    register(model_checkpoint)
    register(csv_logger)
    register(reduce_lr_on_plateau, controls=["learning_rate"])
    register(tensorboard, backend="tensorflow")
    register(tensorboard_jax, name="tensorboard", backend="jax")
    register(warmup_decay, controls=["learning_rate"])
    register(cosine_decay, controls=["learning_rate"])
    register(one_cycle, controls=["learning_rate"])
    register(lookahead)
