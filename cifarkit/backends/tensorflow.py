"""The TensorFlow backend: tf.distribute, the tf.data input pipeline, ``fit`` and the
multi-worker loop.

Images stay uint8 until the last moment: batches are cast to float32 (pixel
values 0-255) just before augmentation; the model scales them itself.
Augmentation runs batch-wise on the training split only, inside tf.data.

Multi-worker training: Keras 3's ``Model.fit`` raises under
MultiWorkerMirroredStrategy (keras-team/keras issue 20585: "Attempt to
convert a value (PerReplica ...) to a Tensor"), so :meth:`fit_multi_worker`
trains with a loop of its own around ``strategy.run`` and drives the same
Keras callbacks through a ``keras.callbacks.CallbackList`` with the logs
``fit`` would give them. The workers stay in step: each step all-reduces the
gradients and the step's summed loss and accuracy; BatchNorm's moving
statistics are averaged after every epoch; validation and test predictions
run on each worker over the whole split with those identical weights; the
decision to stop (early stopping, Ctrl-C) is all-reduced.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Any, Sequence

import numpy as np

from cifarkit.backends import SEED_STRIDE, Backend, Role, Stream, augment_batch, seed_states


@contextlib.contextmanager
def _quiet_native_stderr():
    """Hide what native code writes to fd 2; replay it if the block fails."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # pytest capture, notebooks
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), fd)
        try:
            yield
        except BaseException:
            os.dup2(saved, fd)
            sink.seek(0)
            os.write(fd, sink.read())
            raise
        finally:
            os.dup2(saved, fd)
            os.close(saved)


def import_framework():
    """Import and return ``(tensorflow, keras)``.

    TensorFlow's C++ start-up chatter (oneDNN notices, CUDA probes on machines
    without a GPU) is hidden; set ``TF_CPP_MIN_LOG_LEVEL=0`` to see TensorFlow's
    own logs during training.
    """
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        with _quiet_native_stderr():
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe; leaves logical devices configurable
    import keras
    import tensorflow as tf

    return tf, keras


class TensorFlow(Backend):
    name = "tensorflow"

    def start(self, deterministic: bool = False, seed: int | None = None):
        self.select(deterministic)
        tf, keras = import_framework()
        if deterministic:
            tf.config.experimental.enable_op_determinism()
        if seed is not None:
            keras.utils.set_random_seed(seed)
        return keras

    def versions(self) -> dict[str, str]:
        import keras
        import tensorflow as tf

        return {"keras": keras.__version__, "tensorflow": tf.__version__}

    # -- distribution ------------------------------------------------------------
    def strategy_type(self) -> type:
        import tensorflow as tf

        return tf.distribute.Strategy

    def replicas(self, strategy) -> int:
        return int(strategy.num_replicas_in_sync)

    # -- exported SavedModels --------------------------------------------------------
    def saved_model_names(self, path) -> tuple[str, str]:
        return saved_model_names(path)

    def saved_model_predict(self, path, x) -> tuple[Any, str]:
        return saved_model_predict(path, x)

    def role(self, strategy) -> Role:
        import tensorflow as tf

        if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return Role()
        resolver = strategy.cluster_resolver
        spec = resolver.cluster_spec().as_dict()
        workers = len(spec.get("worker", [])) + len(spec.get("chief", []))
        task_type, task_id = resolver.task_type, resolver.task_id or 0
        if "chief" in spec:
            chief = task_type == "chief"
        else:
            chief = task_type in (None, "worker") and task_id == 0
        return Role(True, chief, int(task_id), max(workers, 1))

    # -- data and steps ----------------------------------------------------------
    def datasets(self, prepared, augment: Sequence[Any], stream: Stream):
        import tensorflow as tf

        autotune = tf.data.AUTOTUNE
        batch_size = stream.batch_size

        def labels(y):
            y = tf.cast(y, tf.int32)
            return tf.one_hot(y, stream.num_classes) if stream.one_hot else y

        def to_float(x, y):
            return tf.cast(x, tf.float32), labels(y)

        x, y = prepared.x_train, prepared.y_train
        n = len(x)
        images, targets = tf.convert_to_tensor(x), tf.convert_to_tensor(y)

        def one_pass(p):
            """Pass ``p`` as batches of indices: a stateless permutation seeded by
            ``(seed, p)``, whatever the global seed and however far this process has got."""
            indices = tf.data.Dataset.range(n).batch(batch_size,
                                                     drop_remainder=stream.drop_remainder)
            if not stream.shuffle:
                return indices
            key = tf.stack([tf.constant(stream.seed, tf.int64), p])
            return indices.map(lambda i: tf.random.experimental.index_shuffle(i, key, n - 1))

        def fetch(g, i):
            return (g, *to_float(tf.gather(images, i), tf.gather(targets, i)))

        train = (tf.data.Dataset.range(2**62).flat_map(one_pass)
                 .skip(stream.first_step).enumerate(start=stream.first_step)
                 .map(fetch, num_parallel_calls=autotune))
        states = seed_states(augment)
        initial = [np.asarray(s.numpy()).copy() for s in states]

        def apply(g, images, y):
            for state, start in zip(states, initial):  # this batch's random state: (seed, g)
                counter = tf.cast(g, state.dtype) * SEED_STRIDE
                state.assign(tf.stack([tf.constant(start[0], state.dtype), counter]))
            return augment_batch(augment, images, y)

        # Sequential when layers share random state: each batch sets it, then uses it.
        train = train.map(apply, num_parallel_calls=None if states else autotune)
        val = None
        if prepared.x_val is not None:
            val = (tf.data.Dataset.from_tensor_slices((prepared.x_val, prepared.y_val))
                   .batch(batch_size).map(to_float, num_parallel_calls=autotune)
                   .prefetch(autotune))
        return train.prefetch(autotune), val

    def fit(self, model, train, validation, *, epochs: int, initial_epoch: int, steps: int,
            callbacks: list, batch_size: int, steps_per_execution: int | str = 1) -> None:
        """Keras's ``fit`` on the tf.data pipeline (``steps_per_execution`` was given to
        ``compile``)."""
        model.fit(train, validation_data=validation, epochs=epochs, initial_epoch=initial_epoch,
                  steps_per_epoch=steps, callbacks=callbacks, shuffle=False, verbose=0)

    def predict(self, model, x, batch_size: int):
        import tensorflow as tf

        forward = tf.function(lambda images: model(images, training=False))
        outputs = [forward(tf.constant(x[i:i + batch_size], tf.float32)).numpy()
                   for i in range(0, len(x), batch_size)]
        return np.concatenate(outputs).astype(np.float32)

    def fit_multi_worker(self, model, strategy, train, *, epochs: int, initial_epoch: int,
                         steps: int, callbacks: list, train_config, global_batch: int,
                         stop_requested) -> None:
        """Validation is one of ``callbacks`` (it adds ``val_*`` entries to the epoch's
        logs). ``stop_requested()`` is read at the end of every epoch; the decision is
        shared by all workers."""
        import keras
        import tensorflow as tf

        train_step, all_sum, average_non_trainable = _multi_worker_steps(
            model, strategy, train_config, global_batch)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = \
            tf.data.experimental.AutoShardPolicy.DATA
        iterator = iter(strategy.experimental_distribute_dataset(train.with_options(options)))
        top5 = "top_5_accuracy" in train_config.metrics
        callback_list = keras.callbacks.CallbackList(callbacks, model=model, epochs=epochs,
                                                     steps=steps, verbose=0)
        model.stop_training = False
        callback_list.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            callback_list.on_epoch_begin(epoch)
            totals = np.zeros(4)
            logs: dict[str, float] = {}
            for step in range(steps):
                callback_list.on_train_batch_begin(step)
                totals += np.array([float(v) for v in train_step(iterator)])
                logs = {"loss": totals[0] / totals[3], "accuracy": totals[1] / totals[3]}
                if top5:
                    logs["top_5_accuracy"] = totals[2] / totals[3]
                callback_list.on_train_batch_end(step, logs)
            average_non_trainable()  # before validation: every worker scores identical weights
            callback_list.on_epoch_end(epoch, dict(logs))
            local_stop = 1.0 if (model.stop_training or stop_requested()) else 0.0
            model.stop_training = float(all_sum(tf.constant(local_stop))) > 0
            if model.stop_training:
                break
        callback_list.on_train_end()


def _multi_worker_steps(model, strategy, train_config, global_batch: int):
    """``(train_step, all_sum, average_non_trainable)``: the multi-worker loop's tf.functions."""
    import tensorflow as tf

    from cifarkit.losses import make_loss

    loss_fn = make_loss(train_config.loss, train_config.label_smoothing, reduction=None)
    optimizer = model.optimizer
    scales_loss = hasattr(optimizer, "scale_loss")
    top5 = "top_5_accuracy" in train_config.metrics
    one_hot = train_config.one_hot

    def step_fn(images, labels):
        with tf.GradientTape() as tape:
            probs = model(images, training=True)
            per_example = loss_fn(labels, probs)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled = optimizer.scale_loss(loss) if scales_loss else loss
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        truth = tf.argmax(labels, axis=-1) if one_hot else tf.cast(labels, tf.int64)
        probs = tf.cast(probs, tf.float32)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probs, axis=-1), truth), tf.float32))
        in_top5 = (tf.reduce_sum(tf.cast(tf.math.in_top_k(tf.cast(truth, tf.int32), probs, 5),
                                         tf.float32))
                   if top5 else tf.constant(0.0))
        count = tf.cast(tf.shape(images)[0], tf.float32)
        return tf.reduce_sum(per_example), correct, in_top5, count

    @tf.function(jit_compile=train_config.jit_compile is True)
    def train_step(it):
        per_replica = strategy.run(step_fn, args=next(it))
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in per_replica]

    @tf.function
    def all_sum(value):
        per_replica = strategy.run(lambda: tf.identity(value))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    @tf.function
    def average_non_trainable():
        variables = [v for v in model.non_trainable_variables if "float" in str(v.dtype)]
        if not variables:
            return
        local = strategy.run(lambda: [tf.identity(v) for v in variables])
        means = [strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for v in local]
        for v, mean in zip(variables, means):
            v.assign(mean)

    return train_step, all_sum, average_non_trainable


def saved_model_predict(path, x) -> tuple[Any, str]:
    """A SavedModel's serving output for ``x``, and the runtime that gave it."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    name = next(iter(signature.structured_input_signature[1]))
    out = signature(**{name: tf.constant(x)})
    return next(iter(out.values())).numpy(), f"tensorflow {tf.__version__}"


def saved_model_names(path) -> tuple[str, str]:
    """A SavedModel's serving signature: ``(input name, output name)``."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    inputs = signature.structured_input_signature[1]
    return next(iter(inputs)), next(iter(signature.structured_outputs))


BACKEND = TensorFlow()
