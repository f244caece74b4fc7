"""Keras callbacks behind the built-in callback plugins.

Imported only when a recipe asks for them (this module imports Keras at its
top level; ``plugins/callbacks.py`` must not).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import ops

from cifarkit import PluginError
from cifarkit.backends import sync_weights
from cifarkit.backends.keras_internals import install_schedule


def _number(value):
    return None if value is None else float(value)


class EarlyStopping(keras.callbacks.EarlyStopping):
    """``keras.callbacks.EarlyStopping`` with the state a checkpoint keeps (``get_state``/
    ``set_state``: a resumed run stops when the uninterrupted one would), and whose
    best epoch is the run's (``chooses_best_epoch``)."""

    chooses_best_epoch = True

    def get_state(self) -> dict:
        weights = self.best_weights
        return {"wait": self.wait, "best": _number(self.best), "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch,
                "best_weights": None if weights is None else [np.asarray(w) for w in weights]}

    def set_state(self, state: dict) -> None:
        self.wait = state["wait"]
        if state["best"] is not None:  # None: still the initial infinity on_train_begin set
            self.best = state["best"]
        self.best_epoch, self.stopped_epoch = state["best_epoch"], state["stopped_epoch"]
        if state.get("best_weights") is not None:
            self.best_weights = list(state["best_weights"])


class ReduceLROnPlateau(keras.callbacks.ReduceLROnPlateau):
    """``keras.callbacks.ReduceLROnPlateau`` with the state a checkpoint keeps."""

    def get_state(self) -> dict:
        return {"wait": self.wait, "best": _number(self.best),
                "cooldown_counter": self.cooldown_counter}

    def set_state(self, state: dict) -> None:
        self.wait, self.cooldown_counter = state["wait"], state["cooldown_counter"]
        if state["best"] is not None:
            self.best = state["best"]


class DirCreatingCheckpoint(keras.callbacks.ModelCheckpoint):
    """``keras.callbacks.ModelCheckpoint`` that creates its file's folder when training starts."""

    def on_train_begin(self, logs=None):
        Path(self.filepath).parent.mkdir(parents=True, exist_ok=True)
        super().on_train_begin(logs)


def _step(step):
    """``(step as float32, the module to compute with)``: NumPy for a concrete step
    (the reporter reading the rate between steps: nothing compiles or syncs per
    read), Keras ops for one traced inside the compiled training step."""
    try:
        return np.asarray(ops.convert_to_numpy(step), np.float32), np
    except Exception:
        return ops.cast(step, "float32"), ops


@keras.saving.register_keras_serializable(package="cifarkit")
class CosineDecaySchedule(keras.optimizers.schedules.CosineDecay):
    """Keras's ``CosineDecay`` (with its linear warmup), computed in NumPy when the
    step is concrete (:func:`_step`); inside the training step it is Keras's own."""

    def __call__(self, step):
        concrete, xp = _step(step)
        if xp is ops:
            return super().__call__(step)
        warmup = 0 if self.warmup_target is None else self.warmup_steps
        peak = self.initial_learning_rate if self.warmup_target is None else self.warmup_target
        concrete = min(float(concrete), self.decay_steps + warmup)
        if concrete < warmup:
            return np.float32(self.initial_learning_rate
                              + (peak - self.initial_learning_rate) * concrete / warmup)
        cosine = 0.5 * (1.0 + np.cos(np.pi * (concrete - warmup) / self.decay_steps))
        return np.float32(peak * ((1 - self.alpha) * cosine + self.alpha))


@keras.saving.register_keras_serializable(package="cifarkit")
class OneCycleSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The one-cycle policy (Smith and Topin; PyTorch's ``OneCycleLR`` with cosine
    annealing): from ``learning_rate / div_factor`` up to ``learning_rate`` over the
    first ``pct_start`` of ``total_steps``, then down to ``learning_rate / (div_factor
    * final_div_factor)``, both halves along a cosine."""

    def __init__(self, learning_rate: float, total_steps: int, pct_start: float = 0.3,
                 div_factor: float = 25.0, final_div_factor: float = 1e4):
        self.learning_rate, self.total_steps, self.pct_start = learning_rate, total_steps, pct_start
        self.div_factor, self.final_div_factor = div_factor, final_div_factor

    def __call__(self, step):
        step, xp = _step(step)
        start = self.learning_rate / self.div_factor
        end = start / self.final_div_factor
        rise = max(1.0, self.pct_start * (self.total_steps - 1))
        fall = max(1.0, (self.total_steps - 1) - rise)
        up = xp.clip(step / rise, 0.0, 1.0)
        down = xp.clip((step - rise) / fall, 0.0, 1.0)

        def anneal(a, b, fraction):
            return b + (a - b) * 0.5 * (1.0 + xp.cos(np.pi * fraction))

        return xp.where(step <= rise, anneal(start, self.learning_rate, up),
                        anneal(self.learning_rate, end, down))

    def get_config(self):
        return {"learning_rate": self.learning_rate, "total_steps": self.total_steps,
                "pct_start": self.pct_start, "div_factor": self.div_factor,
                "final_div_factor": self.final_div_factor}


@keras.saving.register_keras_serializable(package="cifarkit")
class WarmupDecaySchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Piecewise-linear learning rate over ``total_steps``, computed from the optimizer's
    step count inside the training step (so it costs no host round trip per step).

    Args:
        learning_rate: the peak learning rate.
        start: multiplier of the learning rate at the first step.
        peak_at: fraction of training (0-1) at which the peak is reached.
        end: multiplier of the learning rate at the last step.
        total_steps: steps in the whole run.
    """

    def __init__(self, learning_rate: float, start: float, peak_at: float, end: float,
                 total_steps: int):
        self.learning_rate, self.start, self.peak_at, self.end = learning_rate, start, peak_at, end
        self.total_steps = total_steps

    def __call__(self, step):
        step, xp = _step(step)
        progress = xp.clip(step / max(1, self.total_steps - 1), 0.0, 1.0)
        rising = self.start + (1.0 - self.start) * progress / max(self.peak_at, 1e-12)
        falling = (1.0 + (self.end - 1.0) * (progress - self.peak_at) / (1.0 - self.peak_at)
                   if self.peak_at < 1.0 else xp.ones_like(progress))
        return self.learning_rate * xp.where(progress < self.peak_at, rising, falling)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "start": self.start,
                "peak_at": self.peak_at, "end": self.end, "total_steps": self.total_steps}


class ScheduleCallback(keras.callbacks.Callback):
    """A learning-rate schedule over all training steps: ``make(total_steps)`` builds
    it, installed on the optimizer when training begins. The schedule is a function
    of the optimizer's step count, so a resumed run continues it exactly.

    Args:
        name: the plugin's name, for errors.
        make: ``total_steps -> keras.optimizers.schedules.LearningRateSchedule``.
    """

    def __init__(self, name: str, make):
        super().__init__()
        self.name, self.make = name, make

    # Installed as soon as fit hands over the model and its step counts (before it
    # builds the training step, which then computes the rate from the optimizer's
    # iteration count). It replaces the optimizer's rate without the public setter,
    # which would drop the rate variable: the optimizer keeps its variables, so
    # checkpoints and the JAX trainer's state keep their shape.
    def set_model(self, model):
        super().set_model(model)
        self._install()

    def set_params(self, params):
        super().set_params(params)
        self._install()

    def _install(self):
        optimizer = getattr(getattr(self, "model", None), "optimizer", None)
        if optimizer is None or not self.params:
            return
        steps, epochs = self.params.get("steps"), self.params.get("epochs")
        if not steps or not epochs:
            raise PluginError(f"{self.name}: the number of steps per epoch is unknown; "
                              "set train.steps_per_epoch")
        install_schedule(optimizer, self.make(epochs * steps))


class Lookahead(keras.callbacks.Callback):
    """Exponential moving average of all weights, copied back into the model.

    On the JAX backend it runs inside the compiled training step
    (:meth:`device_step`); elsewhere from the batch hooks, on the host. Both give
    the same average.

    Args:
        start_epoch: first epoch (0-based) that averages.
        every: steps between updates.
        decay: per-step decay of the average.
        decay_power: how sharply the averaging strengthens towards the end.
    """

    def __init__(self, start_epoch: int, every: int, decay: float, decay_power: float):
        super().__init__()
        self.start_epoch, self.every, self.decay, self.decay_power = (
            start_epoch, every, decay, decay_power)
        self.average = None  # host: the average; None before the first update
        self.epoch = 0
        self.on_device = False
        self.device_state = None  # device: (started, average), kept by the backend

    def _steps(self) -> tuple[int, int]:
        return (self.params or {}).get("steps") or 1, (self.params or {}).get("epochs") or 1

    def _rho(self, progress):
        return self.decay ** self.every * progress ** self.decay_power

    # -- on the host -------------------------------------------------------------
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.on_device or self.epoch < self.start_epoch or (batch + 1) % self.every:
            return
        steps, epochs = self._steps()
        self._update(self._rho((self.epoch * steps + batch + 1) / (epochs * steps)))

    def on_epoch_end(self, epoch, logs=None):
        if self.average is not None and not self.on_device:
            self.model.set_weights(self.average)

    def _update(self, rho: float) -> None:
        sync_weights(self.model)
        current = self.model.get_weights()
        if self.average is None:
            self.average = current
            return
        self.average = [rho * a + (1.0 - rho) * w if np.issubdtype(w.dtype, np.floating) else w
                        for a, w in zip(self.average, current)]
        self.model.set_weights(self.average)

    # -- on the device (the JAX backend's training step) ------------------------------
    def initial_device_state(self, weights):
        if self.average is not None:  # restored from a checkpoint
            return np.bool_(True), [np.asarray(a) for a in self.average]
        return np.bool_(False), [np.zeros(w.shape, w.dtype) for w in weights]

    def device_step(self, step, weights, state):
        """After training step ``step`` (0-based, of the run): the same update the host
        hooks make, and the average into the weights at each epoch's end."""
        started, average = state
        steps, epochs = self._steps()
        position = step % steps + 1  # the step's number within its epoch (1-based)
        update = ops.logical_and(step // steps >= self.start_epoch, position % self.every == 0)
        rho = self._rho(ops.cast(step + 1, "float32") / (epochs * steps))
        floating = [keras.backend.is_float_dtype(w.dtype) for w in weights]
        mixed = [ops.where(started, rho * a + (1.0 - rho) * w, w) if f else w
                 for a, w, f in zip(average, weights, floating)]
        average = [ops.where(update, m, a) for m, a in zip(mixed, average)]
        started = ops.logical_or(started, update)
        into = ops.logical_and(started, ops.logical_or(update, position == steps))
        weights = [ops.where(into, a, w) if f else w
                   for a, w, f in zip(average, weights, floating)]
        return weights, (started, average)

    # -- checkpoint ------------------------------------------------------------------
    def get_state(self) -> dict:
        average = self.average
        if self.device_state is not None:
            started, values = self.device_state
            average = [np.asarray(a) for a in values] if bool(started) else None
        return {"average": None if average is None else [np.asarray(a) for a in average]}

    def set_state(self, state: dict) -> None:
        average = state.get("average")
        self.average = None if average is None else [np.asarray(a) for a in average]
        self.device_state = None
