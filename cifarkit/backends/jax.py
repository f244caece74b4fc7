"""The JAX backend: keras.distribution, the training steps on the device, and compile
times read from ``jax.monitoring``.

No tf.data (a JAX run never imports TensorFlow). The training split is the
same step-addressed stream as TensorFlow's (:class:`cifarkit.backends.Stream`).
On one process the split lives on the device and chunks of training steps run
as one compiled program (:mod:`cifarkit.backends.jax_steps`). With several
processes each batch is gathered from the uint8 array on the host, travels as
uint8, and the recipe's augmentation layers (the same plain Keras layers as on
TensorFlow) run on the device as one ``jax.jit``-compiled function of
``(images, random states)``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any, Sequence

import numpy as np

from cifarkit.errors import CifarkitError
from cifarkit.backends.jax_stream import Augmenter, TrainStream
from cifarkit.backends import (Backend, Role, Stream)


#: jax.monitoring's events for the three stages of a compilation.
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                  "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")


class Jax(Backend):
    name = "jax"
    ema_in_step = True

    def __init__(self) -> None:
        self._compile_s = 0.0
        self._listening = False

    def _prepare(self, deterministic: bool, first: bool) -> None:
        if importlib.util.find_spec("jax") is None:
            raise CifarkitError("the jax backend needs JAX: pip install -e \".[jax]\" (CPU), or "
                                "JAX's CUDA build on a GPU machine (see docs/backends.md)")
        if deterministic and first:
            flags = os.environ.get("XLA_FLAGS", "")
            if "xla_gpu_deterministic_ops" not in flags:  # read when JAX starts
                os.environ["XLA_FLAGS"] = (flags + " --xla_gpu_deterministic_ops=true").strip()

    def start(self, deterministic: bool = False, seed: int | None = None):
        self.select(deterministic)
        import keras

        self._listen()
        if seed is not None:
            _set_random_seed(keras, seed)
        return keras

    def versions(self) -> dict[str, str]:
        import jax
        import keras

        return {"keras": keras.__version__, "jax": jax.__version__}

    # -- distribution ------------------------------------------------------------
    def strategy_type(self) -> type:
        import keras

        return keras.distribution.DataParallel.__base__  # their base class (not exported)

    def use(self, strategy) -> None:
        import keras

        keras.distribution.set_distribution(strategy)

    def replicas(self, strategy) -> int:
        mesh = strategy.device_mesh
        return int(mesh.shape[list(mesh.axis_names).index(strategy.batch_dim_name)])

    def role(self, strategy) -> Role:
        """Several processes (``jax.distributed``): process 0 is the chief."""
        import jax

        count = jax.process_count()
        if count == 1:
            return Role()
        index = jax.process_index()
        return Role(True, index == 0, index, count)

    def initialising(self):
        """Variables created inside are initialised as one compiled program on exit
        (:func:`cifarkit.backends.keras_internals.initialising`)."""
        import jax

        if jax.process_count() > 1:  # every process initialises as Keras does
            return super().initialising()
        from .keras_internals import initialising

        return initialising()

    # -- data and steps ----------------------------------------------------------
    def trains_partial_batch(self, replicas: int, role: Role) -> bool:
        """A pass's last partial batch is padded to a whole one with zero-weight
        examples (:meth:`TrainStream.padded`), so one program serves every step and the
        batch splits evenly over replicas and processes."""
        return True

    def datasets(self, prepared, augment: Sequence[Any], stream: Stream):
        import jax

        augmenter = Augmenter(augment, stream.names or [type(a).__name__ for a in augment])
        y = _labels(prepared.y_train, stream.num_classes, stream.one_hot)
        train = TrainStream(prepared.x_train, y, stream.batch_size, augmenter, stream.seed,
                            stream.shuffle, stream.drop_remainder, stream.first_step,
                            shard=(jax.process_index(), jax.process_count()))
        val = None if prepared.x_val is None else (
            prepared.x_val.astype(np.float32),
            _labels(prepared.y_val, stream.num_classes, stream.one_hot))
        return train, val

    def fit(self, model, train, validation, *, epochs: int, initial_epoch: int, steps: int,
            callbacks: list, batch_size: int, steps_per_execution: int | str = 1) -> None:
        """Keras's ``fit``, driving the training steps on the device
        (:class:`cifarkit.backends.jax_steps.DeviceTrainer`): the training split stays on
        the device and each call runs a compiled chunk of steps. Validation batches are
        the largest size up to the batch that splits the split evenly, so its step too
        compiles once."""
        from .jax_steps import DeviceTrainer, chunk_length, device_callbacks

        chunk = chunk_length(steps_per_execution, steps)
        model.train_function = DeviceTrainer(model, train, chunk, steps,
                                             device_callbacks(callbacks))
        previous, model.steps_per_execution = model.steps_per_execution, chunk
        try:
            model.fit(train.placeholder(), validation_data=validation, epochs=epochs,
                      initial_epoch=initial_epoch, steps_per_epoch=steps, callbacks=callbacks,
                      shuffle=False, verbose=0,
                      validation_batch_size=None if validation is None
                      else even_batch(len(validation[0]), batch_size))
        finally:
            model.train_function, model.steps_per_execution = None, previous
            _unshare_averages(model)

    def probe(self, model, input_shape: tuple, batch_size: int):
        """A whole batch through Keras's compiled predict step: the program prediction
        then reuses (the probe compiles nothing of its own)."""
        import jax

        if jax.process_count() > 1:
            return super().probe(model, input_shape, batch_size)
        from .jax_steps import settle

        settle(model)
        return self.predict_keras(model, np.zeros((batch_size, *input_shape), np.float32),
                                  batch_size)

    def predict(self, model, x, batch_size: int):
        """``model.predict`` under the run's distribution, with the last batch padded to a
        full one (every batch must split evenly over the devices). With several
        processes, on this process's first device alone, from the replicated weights."""
        import jax

        if jax.process_count() > 1:
            return _predict_here(model, x, batch_size)
        return self.predict_keras(model, x, batch_size)

    def predict_keras(self, model, x, batch_size: int):
        """``model.predict`` with the last batch padded: one shape, one compiled step."""
        n = len(x)
        pad = -n % batch_size
        if pad:
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0)[:n], np.float32)

    def fit_multi_worker(self, model, strategy, train, *, epochs: int, initial_epoch: int,
                         steps: int, callbacks: list, train_config, global_batch: int,
                         stop_requested) -> None:
        """Keras's own ``fit``: under ``jax.distributed`` every process feeds its share of
        each global batch (the stream shards itself) and XLA all-reduces the gradients.
        The decision to stop (early stopping, Ctrl-C) is gathered from every process at
        each epoch's end, so no process waits for one that has left."""
        model.fit(train.batches(), epochs=epochs, initial_epoch=initial_epoch,
                  steps_per_epoch=steps,
                  callbacks=[*callbacks, _shared_stop(stop_requested)], shuffle=False,
                  verbose=0)

    # -- compilation ---------------------------------------------------------------
    def use_compilation_cache(self, setting: str):
        """JAX's persistent compilation cache, every program kept (also the small ones
        that building a model compiles op by op)."""
        import jax

        from cifarkit.files import cache_folder

        folder = cache_folder(setting, self.name)
        if folder is None:
            jax.config.update("jax_enable_compilation_cache", False)
            return None
        jax.config.update("jax_enable_compilation_cache", True)
        jax.config.update("jax_compilation_cache_dir", str(folder))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        return folder

    def _listen(self) -> None:
        if self._listening:
            return
        import jax

        def on_duration(event: str, seconds: float, **_: Any) -> None:
            if event in COMPILE_EVENTS:
                self._compile_s += seconds

        jax.monitoring.register_event_duration_secs_listener(on_duration)
        self._listening = True

    def compiles(self) -> bool:
        return self._listening

    def advice(self) -> str | None:
        import jax

        from .keras_internals import checked, keras_release

        notes = []
        if all(d.platform == "cpu" for d in jax.devices()):
            notes.append("JAX sees no accelerator here, and on a CPU TensorFlow trains several "
                         "times faster (measured in docs/backends.md): --backend tensorflow")
        if not checked():
            notes.append("Keras {}.{} is not a release cifarkit's JAX start-up was checked "
                         "against, so variables are initialised one by one (a slower start; "
                         "docs/backends.md)".format(*keras_release()))
        return "; ".join(notes) or None

    def compile_seconds(self) -> float:
        return self._compile_s


def _unshare_averages(model) -> None:
    """Keras's ``fit`` ends with ``finalize_variable_values``, which on JAX makes each
    trainable variable hold the very array its moving average holds (``use_ema``);
    Keras's predict step then donates that array and the average is left deleted.
    Each weight gets its own copy."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not getattr(optimizer, "use_ema", False):
        return
    import jax.numpy as jnp

    for variable in model.trainable_variables:
        variable.assign(jnp.array(variable.value, copy=True))


def even_batch(n: int, batch_size: int) -> int:
    """The largest size up to ``batch_size`` that splits ``n`` examples into whole
    batches (one shape: one compiled step), unless that is under a quarter of
    ``batch_size`` (then ``batch_size``: fewer, larger steps beat one shape)."""
    for size in range(min(n, batch_size), max(1, batch_size // 4) - 1, -1):
        if n % size == 0:
            return size
    return batch_size


def _predict_here(model, x, batch_size: int):
    """Probabilities from a jitted stateless forward pass on this process's first device,
    with the model's (replicated) weights copied there."""
    import jax

    device = jax.local_devices()[0]
    forward = jax.jit(lambda tv, ntv, images: model.stateless_call(tv, ntv, images,
                                                                   training=False)[0])
    trainable = jax.device_put([np.asarray(v.value) for v in model.trainable_variables], device)
    fixed = jax.device_put([np.asarray(v.value) for v in model.non_trainable_variables], device)
    out = [np.asarray(forward(trainable, fixed, jax.device_put(x[i:i + batch_size], device)),
                      np.float32) for i in range(0, len(x), batch_size)]
    return np.concatenate(out)


def _shared_stop_class():
    import keras
    from jax.experimental import multihost_utils

    class SharedStop(keras.callbacks.Callback):
        """Last of the callbacks: stop every process when any wants to stop."""

        def __init__(self, stop_requested):
            super().__init__()
            self.stop_requested = stop_requested

        def on_epoch_end(self, epoch, logs=None):
            local = bool(self.model.stop_training or self.stop_requested())
            votes = multihost_utils.process_allgather(np.array([int(local)], np.int32))
            self.model.stop_training = bool(np.asarray(votes).sum() > 0)

    return SharedStop


def _shared_stop(stop_requested):  # the class needs Keras: built once it has started
    return _shared_stop_class()(stop_requested)


def _set_random_seed(keras, seed: int) -> None:
    """``keras.utils.set_random_seed``, which would import TensorFlow (only to seed it,
    when it is installed): that import is refused for the call."""
    if "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return
    sys.modules["tensorflow"] = None  # type: ignore[assignment]  # `import tensorflow` fails
    try:
        keras.utils.set_random_seed(seed)
    finally:
        del sys.modules["tensorflow"]


def _labels(y: np.ndarray, num_classes: int, one_hot: bool) -> np.ndarray:
    y = y.astype(np.int32)
    return np.eye(num_classes, dtype=np.float32)[y] if one_hot else y


BACKEND = Jax()

