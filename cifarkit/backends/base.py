"""The Backend interface (:class:`Backend`), what the input pipeline is asked for
(:class:`Stream`), a process's part in a run (:class:`Role`), and the augmentation
helpers both backends' pipelines share."""

from __future__ import annotations

import abc
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from cifarkit.errors import CifarkitError

#: Seed-generator counter values reserved for one batch (a layer may draw several seeds).
SEED_STRIDE = 1024


def seed_states(layers: Sequence[Any]) -> list:
    """The random-state variables (Keras ``SeedGenerator`` states) of ``layers``."""
    states: dict[int, Any] = {}
    for layer in layers:
        for v in getattr(layer, "variables", []):
            if v.path.split("/")[-1] == "seed_generator_state":
                states.setdefault(id(v), v)
    return list(states.values())


def mixes_labels(layer) -> bool:
    """Whether an augmentation layer mixes labels as well as images: Keras's ``MixUp``
    and ``CutMix``, or any layer with ``mixes_labels = True``. Such a layer is called
    with ``{"images": ..., "labels": ...}`` (one-hot float labels) and returns both."""
    if getattr(layer, "mixes_labels", False):
        return True
    import keras

    return isinstance(layer, (keras.layers.MixUp, keras.layers.CutMix))


def augment_batch(layers: Sequence[Any], images, labels, training: bool = True):
    """A batch through the augmentation layers in order: ``(images, labels)``."""
    for layer in layers:
        if mixes_labels(layer):
            out = layer({"images": images, "labels": labels}, training=training)
            images, labels = out["images"], out["labels"]
        else:
            images = layer(images, training=training)
    return images, labels


def steps_per_pass(n: int, batch_size: int, drop_remainder: bool) -> int:
    """Batches in one pass over ``n`` examples (at least one)."""
    return max(1, n // batch_size) if drop_remainder else -(-n // batch_size)


@dataclass(frozen=True)
class Role:
    """This process's part in a run: one process, or one worker of several."""

    multi_worker: bool = False
    chief: bool = True
    task_index: int = 0
    workers: int = 1


@dataclass(frozen=True)
class Stream:
    """What the input pipeline is asked for: the training stream's form and position.

    The training split is one endless stream of batches addressed by position:
    pass ``p`` over the data is a permutation keyed by ``(seed, p)``, and batch
    ``g`` is augmented with every augmentation layer's random state set from
    ``(its seed, g)``. What step ``g`` trains on does not depend on how many
    batches this process has seen before, so a resumed run (``first_step`` >
    0) trains on the batches an uninterrupted one would.
    """

    batch_size: int
    num_classes: int
    one_hot: bool
    seed: int
    shuffle: bool = True
    drop_remainder: bool = False  # leave out the last partial batch of each pass
    first_step: int = 0
    names: tuple[str, ...] = ()  # the augmentations' plugin names, for error messages


class Backend(abc.ABC):
    """One Keras backend, as a run uses it. A backend module subclasses it and
    implements the abstract methods; the others have defaults that fit a backend
    with no such feature (no distribution to enter, one process, no compile count)."""

    name: str = ""
    #: Whether Keras's optimizer can overwrite the weights with their moving average
    #: inside the training step (``ema_overwrite_frequency``). TensorFlow's cannot
    #: under a tf.distribute strategy (a ``merge_call`` inside a ``cond``), so there
    #: a callback does it after each epoch's last step.
    ema_in_step: bool = False

    def select(self, deterministic: bool = False) -> None:
        """Make this the backend Keras starts with (before Keras is imported)."""
        from cifarkit.backends import active

        running = active()
        if running is not None and running != self.name:
            raise CifarkitError(f"Keras is already running on the {running} backend in this "
                                f"process and cannot switch to {self.name}; start a new "
                                "process (the cifarkit command does)")
        self._prepare(deterministic, first=running is None)
        os.environ["KERAS_BACKEND"] = self.name

    def _prepare(self, deterministic: bool, first: bool) -> None:
        """Backend set-up that must happen before Keras (and the framework) starts."""

    @abc.abstractmethod
    def start(self, deterministic: bool = False, seed: int | None = None):
        """Select this backend, import Keras on it and return the ``keras`` module; with
        ``seed``, seed Python, NumPy and the backend (and ops determinism if asked)."""

    @abc.abstractmethod
    def versions(self) -> dict[str, str]:
        """Versions of Keras and this backend's framework."""

    # -- distribution ------------------------------------------------------------
    @abc.abstractmethod
    def strategy_type(self) -> type:
        """The class every strategy plugin's result must be an instance of."""

    def use(self, strategy) -> None:
        """Make ``strategy`` the one models, variables, fit and predict follow."""

    @abc.abstractmethod
    def replicas(self, strategy) -> int:
        """How many parts each batch is split into."""

    def role(self, strategy) -> Role:
        """This process's part in the run under ``strategy``."""
        return Role()

    def initialising(self):
        """A context in which models and optimizer slots are created: their variables
        are initialised when it exits, at once where the backend can (one compiled
        program on JAX). By default they are initialised as they are created."""
        return contextlib.nullcontext()

    # -- data and steps ----------------------------------------------------------
    def trains_partial_batch(self, replicas: int, role: Role) -> bool:
        """Whether each pass's last partial batch is trained on (else it is left out, so
        every replica gets an equal share of every batch)."""
        return replicas == 1

    @abc.abstractmethod
    def datasets(self, prepared, augment: Sequence[Any], stream: Stream):
        """``(train, validation or None)`` in the form :meth:`fit` takes; ``train`` is
        endless (fit it with ``steps``)."""

    @abc.abstractmethod
    def fit(self, model, train, validation, *, epochs: int, initial_epoch: int, steps: int,
            callbacks: list, batch_size: int, steps_per_execution: int | str = 1) -> None:
        """Train epochs ``initial_epoch + 1 .. epochs`` with Keras's own step loop,
        ``steps_per_execution`` steps per call into the backend (``"auto"``: the
        backend's choice)."""

    def fit_multi_worker(self, model, strategy, train, *, epochs: int, initial_epoch: int,
                         steps: int, callbacks: list, train_config, global_batch: int,
                         stop_requested) -> None:
        """Train like :meth:`fit` where Keras's ``fit`` cannot, one process per worker."""
        raise CifarkitError(f"multi-worker training is not available on the {self.name} backend")

    def probe(self, model, input_shape: tuple, batch_size: int):
        """The model's outputs for blank images of ``input_shape`` (at least one), for
        checking its contract; a backend that compiles may use ``batch_size`` images,
        so the compiled forward pass is the one prediction reuses."""
        import numpy as np

        return model(np.zeros((1, *input_shape), np.float32), training=False)

    def predict_keras(self, model, x, batch_size: int):
        """Probabilities for ``x`` from Keras's own ``predict`` (across the replicas)."""
        return model.predict(x, batch_size=batch_size, verbose=0)

    def predict(self, model, x, batch_size: int):
        """Probabilities for ``x`` on this process alone (float32 NumPy), whatever the
        replicas; the last partial batch included."""

    # -- exported SavedModels ----------------------------------------------------------
    def saved_model_names(self, path) -> tuple[str, str]:
        """A SavedModel's serving signature: ``(input name, output name)``."""
        raise CifarkitError(f"reading a SavedModel needs TensorFlow, not the {self.name} backend")

    def saved_model_predict(self, path, x) -> tuple[Any, str]:
        """A SavedModel's serving output for images ``x``, and the runtime that gave it."""
        raise CifarkitError(f"running a SavedModel needs TensorFlow, not the {self.name} backend")

    # -- compilation ---------------------------------------------------------------
    def use_compilation_cache(self, setting: str) -> Path | None:
        """Keep compiled programs in a persistent cache (``setting``: "auto", "off" or a
        folder); returns the folder in use, or None where the backend has no such cache."""
        return None

    def advice(self) -> str | None:
        """One line for the run header when this backend is a poor fit for this machine
        (and what to use instead), else None."""
        return None

    def compiles(self) -> bool:
        """Whether :meth:`compile_seconds` counts compilations as they happen (else the
        first epoch's excess over the steady ones stands in for them)."""
        return False

    def compile_seconds(self) -> float:
        """Seconds spent compiling in this process so far (where :meth:`compiles`)."""
        return 0.0
