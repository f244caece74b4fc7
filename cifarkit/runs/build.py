"""Everything a run is made of, built from a validated recipe.

Data, strategy, model, optimizer, loss, augmentation, input pipeline and
callbacks. All of it can still fail on user input, so it is built before the
run directory exists: a failed start leaves nothing behind. The benchmark
(``benchmarks/run.py``) builds its models with the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit import backends
from cifarkit.backends import Backend, Role, Stream, steps_per_pass
from cifarkit.runs.checkpoint import WEIGHTS, Restore, restore_random_state
from cifarkit.data import Prepared, prepare
from cifarkit.errors import DataError, OutputError, PluginError, RecipeError, first_line
from cifarkit.core.recipe import Recipe
from cifarkit.core.registry import Registry


def load_data(recipe: Recipe, registry: Registry) -> Prepared:
    """The recipe's dataset, limited and split (NumPy only: no framework starts)."""
    splits = registry.call(recipe.data.dataset, backend=backends.get(recipe.train.backend))
    splits.check(f"dataset {recipe.data.dataset.plugin!r}")
    try:
        return prepare(splits, recipe.data.validation_split, recipe.data.limit, recipe.seed)
    except DataError as exc:
        raise DataError(f"{recipe.data.dataset.origin}: data.validation_split: {exc}") from None


@dataclass
class Built:
    """A run's parts, ready to train."""

    backend: Backend
    strategy: Any
    model: Any
    loss: Any
    augment: list
    train_ds: Any
    val_ds: Any
    steps: int  # training steps per epoch
    replicas: int
    learning_rate: float  # after train.learning_rate_scaling
    role: Role
    compile_cache: Path | None = None  # the persistent compilation cache in use, if any
    starting: str | None = None  # what train.init_from loaded and train.freeze froze
    drops_partial_batch: bool = False  # each pass's last partial batch is left out

    @property
    def split_batches(self) -> bool:
        """Several replicas: full training batches only, predictions outside the replicas."""
        return self.replicas > 1


def build(recipe: Recipe, registry: Registry, data: Prepared,
          restore: Restore | None = None, resume: Path | None = None) -> Built:
    """Start the recipe's backend and build the strategy, model, optimizer, augmentation
    and datasets. With ``restore`` (a checked checkpoint: :class:`cifarkit.runs.checkpoint.Restore`), the model and
    optimizer continue from it and the datasets after its epochs, so a resumed run
    trains on the batches an uninterrupted one would."""
    backend = backends.get(recipe.train.backend)
    backend.start(recipe.train.deterministic, recipe.seed)
    compile_cache = backend.use_compilation_cache(recipe.train.compilation_cache)
    strategy = registry.call(recipe.strategy, backend=backend)
    backend.use(strategy)  # models, variables, fit and predict follow it
    role = backend.role(strategy)
    if role.multi_worker and resume is not None:
        raise OutputError(f"{resume}: --resume is not supported for multi-worker runs; "
                          "start the run again")
    replicas = backend.replicas(strategy)
    learning_rate = recipe.train.learning_rate * (
        replicas if recipe.train.learning_rate_scaling == "linear" else 1)
    num_classes = len(data.class_names)
    batch = recipe.data.batch_size
    _check_batch(recipe, len(data.x_train), replicas)
    # Where the backend cannot train a pass's last partial batch (several replicas
    # need equal shares), it is left out; another one each pass, as the order changes.
    drop = not backend.trains_partial_batch(replicas, role)
    steps = recipe.train.steps_per_epoch or steps_per_pass(len(data.x_train), batch, drop)
    with strategy.scope():
        with backend.initialising():
            model = build_model(registry, recipe, data.input_shape, num_classes, data.x_train,
                                backend)
        # A resumed run takes every weight from its checkpoint (the source may be gone).
        starting = start_weights(model, recipe, initialise=restore is None)
        loss = compile_model(model, recipe, registry, learning_rate, backend)
        use_ema(model.optimizer, recipe.train.ema_momentum, steps, backend)
        with backend.initialising():  # the optimizer's slots (its own variables exist)
            model.optimizer.build(model.trainable_variables)
        if restore is not None:
            _restore(model, restore)
        check_model(model, recipe, data.input_shape, num_classes, backend)
    augment = [registry.call(a, backend=backend, seed=recipe.seed + i)
               for i, a in enumerate(recipe.augmentation)]
    check_augmentation(recipe, augment, data.input_shape, num_classes)
    stream = Stream(batch, num_classes, recipe.train.one_hot, recipe.seed, recipe.data.shuffle,
                    drop_remainder=drop,
                    first_step=(len(restore.state["rows"]) if restore else 0) * steps,
                    names=tuple(a.plugin for a in recipe.augmentation))
    train_ds, val_ds = backend.datasets(data, augment, stream)
    return Built(backend, strategy, model, loss, augment, train_ds, val_ds, steps, replicas,
                 learning_rate, role, compile_cache, starting, drop)


def start_weights(model, recipe: Recipe, initialise: bool = True) -> str | None:
    """``train.init_from`` (unless ``initialise`` is false) and ``train.freeze``, before
    the model is compiled; returns the one-line report (None: neither is set)."""
    from cifarkit.runs.init import freeze, load_matching

    tr, parts = recipe.train, []
    if tr.init_from is not None and initialise:
        parts.append(load_matching(model, tr.init_from, f"{recipe.path}: train.init_from"))
    if tr.freeze:
        frozen = freeze(model, tr.freeze, f"{recipe.path}: train.freeze")
        parts.append(f"frozen: {', '.join(frozen)}")
    return "; ".join(parts) or None


def use_ema(optimizer, momentum: float | None, steps_per_epoch: int, backend: Backend) -> None:
    """Keras's own weight averaging (``use_ema``) on any optimizer, before it is built.
    The average replaces the weights at the end of every epoch, so everything after
    an epoch sees it: inside the training step (Keras's ``ema_overwrite_frequency``)
    where the backend can, else by :class:`cifarkit.runs.loop.AverageAtEpochEnd`."""
    if momentum is None:
        return
    optimizer.use_ema, optimizer.ema_momentum = True, float(momentum)
    optimizer.ema_overwrite_frequency = int(steps_per_epoch) if backend.ema_in_step else None


def _restore(model, restore: Restore) -> None:
    """The checkpoint's weights, optimizer state and random state, into ``model``
    (its optimizer built), from the checked private copy."""
    try:
        model.load_weights(restore.folder / WEIGHTS)
    except Exception as exc:  # the model's code changed since the checkpoint
        raise OutputError(f"{restore.where}: does not fit the model this recipe builds "
                          f"({first_line(exc)}); start the run again") from None
    restore_random_state(model, restore.state)


def _check_batch(recipe: Recipe, examples: int, replicas: int) -> None:
    """Several replicas: every batch must be full and split evenly."""
    batch = recipe.data.batch_size
    if replicas > 1 and batch % replicas:
        raise RecipeError(f"{recipe.path}: data.batch_size: {batch} does not split evenly over "
                          f"{replicas} replicas; use a multiple of {replicas}")
    if replicas > 1 and examples < batch:
        raise DataError(f"{recipe.path}: data.batch_size: {batch} is larger than the "
                        f"{examples} training examples; with {replicas} replicas "
                        "every batch must be full")


def build_model(registry: Registry, recipe: Recipe, input_shape: tuple, num_classes: int,
                x_train: np.ndarray, backend: Backend | None = None):
    """The recipe's model, built under its dtype policy from (up to 5,000 of) ``x_train``
    as ``sample_images``: a built keras.Model with float32 output."""
    import keras

    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(recipe.train.mixed_precision)
    try:
        model = registry.call(recipe.model, backend=backend, input_shape=input_shape,
                              num_classes=num_classes, sample_images=x_train[:5000])
    finally:
        keras.config.set_dtype_policy(previous_policy)
    if not model.built:  # e.g. a Sequential without keras.Input: build it on one image
        model(np.zeros((1, *input_shape), np.float32), training=False)
    return _float32_output(model, keras)


def compile_model(model, recipe: Recipe, registry: Registry, learning_rate: float,
                  backend: Backend | None = None):
    """Compile with the recipe's optimizer, loss and metrics; return the loss object."""
    import keras

    from cifarkit.losses import make_loss

    optimizer = registry.call(recipe.train.optimizer, backend=backend,
                              learning_rate=learning_rate)
    loss = make_loss(recipe.train.loss, recipe.train.label_smoothing)
    metrics: list[Any] = []
    for name in recipe.train.metrics:
        if name == "accuracy":
            metrics.append("accuracy")
        elif name == "top_5_accuracy":
            cls = (keras.metrics.TopKCategoricalAccuracy if recipe.train.one_hot
                   else keras.metrics.SparseTopKCategoricalAccuracy)
            metrics.append(cls(k=5, name="top_5_accuracy"))
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics,
                  jit_compile=recipe.train.jit_compile,
                  # "auto" is 1 for Keras; on JAX, fit then runs chunks of steps on the device
                  steps_per_execution=1 if recipe.train.steps_per_execution == "auto"
                  else recipe.train.steps_per_execution)
    return loss


def build_callbacks(registry: Registry, recipe: Recipe, run_dir: Path, learning_rate: float,
                    backend: Backend | None = None) -> list:
    """The recipe's ``[[callbacks]]``, writing into ``run_dir``."""
    return [registry.call(c, backend=backend, run_dir=run_dir, learning_rate=learning_rate)
            for c in recipe.callbacks]


def check_augmentation(recipe: Recipe, layers: list, input_shape: tuple,
                       num_classes: int) -> None:
    """Each augmentation keeps the images' shape, checked symbolically (traced on a
    ``keras.KerasTensor``, so nothing is computed or compiled); one that mixes labels
    needs a loss that takes soft (one-hot) labels."""
    import keras

    images = keras.KerasTensor((2, *input_shape), "float32")
    labels = keras.KerasTensor((2, num_classes), "float32")
    for call, layer in zip(recipe.augmentation, layers):
        where = f"{call.origin}: {call.key}: augmentation {call.plugin!r}"
        mixing = backends.mixes_labels(layer)
        if mixing and not recipe.train.one_hot:
            raise RecipeError(f"{where} mixes labels, which train.loss = "
                              f"{recipe.train.loss!r} cannot take (it reads class indices); "
                              "use loss = \"categorical_crossentropy\"")
        try:
            out = backends.augment_batch([layer], images, labels)[0] if mixing \
                else layer(images, training=True)
        except Exception as exc:
            raise PluginError(f"{where} fails on images of shape {input_shape} "
                              f"({first_line(exc)})") from None
        if tuple(out.shape) != images.shape:
            raise PluginError(f"{where} turns images of shape {input_shape} into "
                              f"{tuple(out.shape)[1:]}; augmentations must keep the shape "
                              "(the model is built for the data's)")
        images = out


def check_model(model, recipe: Recipe, input_shape: tuple, num_classes: int,
                backend: Backend) -> None:
    """The model contract, checked on blank images: input, width and probabilities
    (through the backend's compiled forward pass where it has one: see
    :meth:`cifarkit.backends.Backend.probe`)."""
    where = f"{recipe.model.origin}: {recipe.model.key}: model {recipe.model.plugin!r}"
    try:
        probe = np.asarray(backend.probe(model, input_shape, recipe.data.batch_size),
                           np.float32)[:1]
    except Exception as exc:
        expected = getattr(model, "input_shape", None)
        raise PluginError(f"{where} does not take the data's images of shape {input_shape}"
                          + (f" (it takes {tuple(expected)[1:]})" if expected else "")
                          + f": {first_line(exc)}") from None
    if probe.ndim != 2 or probe.shape[-1] != num_classes:
        raise PluginError(f"{where} outputs shape {probe.shape[1:]}, but the dataset has "
                          f"{num_classes} classes (expected ({num_classes},))")
    if probe.min() < -1e-6 or abs(float(probe.sum()) - 1.0) > 1e-2:
        raise PluginError(f"{where} must output class probabilities (end in a softmax); "
                          f"its outputs sum to {float(probe.sum()):.3g}")


def _float32_output(model, keras):
    """Keep the model's output in float32 under mixed precision, as Keras recommends."""
    output = model.outputs[0] if getattr(model, "outputs", None) else None
    if output is None or keras.backend.standardize_dtype(output.dtype) == "float32":
        return model
    cast = keras.layers.Activation("linear", dtype="float32", name="float32_output")(output)
    return keras.Model(model.inputs, cast, name=model.name)
