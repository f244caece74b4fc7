"""Training under MultiWorkerMirroredStrategy, where ``Model.fit`` fails.

Keras 3's ``Model.fit`` raises under MultiWorkerMirroredStrategy
(keras-team/keras issue 20585: "Attempt to convert a value (PerReplica ...)
to a Tensor"). This module trains with a loop of its own around
``strategy.run`` and drives the same Keras callbacks (early stopping,
checkpoints, cifarkit's monitor and reporter) through a
``keras.callbacks.CallbackList``, with the same logs ``fit`` would give them.

How the workers stay in step:

* each training step all-reduces the gradients (the optimizer does that
  under the strategy) and the step's summed loss and accuracy, so every
  worker logs the same numbers;
* BatchNorm's moving statistics are averaged across workers after every
  epoch, so all workers hold identical weights;
* validation (cifarkit's validation callback) and test predictions run on
  each worker over the whole split, with those identical weights;
* the decision to stop (early stopping, Ctrl-C) is all-reduced, so no
  worker waits for a partner that has left.

This is TensorFlow code on purpose: like the input pipeline and the
strategies, it is the part that knows tf.distribute.
"""

from __future__ import annotations

import numpy as np

from . import framework


def replicas(strategy) -> int:
    """How many parts each batch is split into: tf.distribute's replicas in sync, or
    the size of a keras.distribution mesh's batch axis (JAX)."""
    if framework.active() == "jax":
        mesh = strategy.device_mesh
        return int(mesh.shape[list(mesh.axis_names).index(strategy.batch_dim_name)])
    return int(strategy.num_replicas_in_sync)


def is_multi_worker(strategy) -> bool:
    if framework.active() != "tensorflow":
        return False
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def worker_role(strategy) -> tuple[bool, int, int]:
    """``(is_chief, task_index, number_of_workers)`` of this process."""
    resolver = strategy.cluster_resolver
    spec = resolver.cluster_spec().as_dict()
    workers = len(spec.get("worker", [])) + len(spec.get("chief", []))
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    if "chief" in spec:
        chief = task_type == "chief"
    else:
        chief = task_type in (None, "worker") and task_id == 0
    return chief, int(task_id), max(workers, 1)


def predict(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Predictions on this worker alone, batch by batch (no collectives).

    On JAX, ``model.predict`` under the run's distribution, with the last batch
    padded to a full one (every batch must split evenly over the devices).
    """
    if framework.active() == "jax":
        n = len(x)
        pad = -n % batch_size
        if pad:
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0)[:n], np.float32)
    import tensorflow as tf

    forward = tf.function(lambda images: model(images, training=False))
    outputs = [forward(tf.constant(x[i:i + batch_size], tf.float32)).numpy()
               for i in range(0, len(x), batch_size)]
    return np.concatenate(outputs).astype(np.float32)


def custom_fit(model, strategy, train_ds, *, steps: int, epochs: int, initial_epoch: int,
               global_batch: int, loss: str, one_hot: bool, label_smoothing: float,
               metrics: tuple[str, ...],
               callbacks: list, jit_compile: bool, stop_requested) -> None:
    """Train like ``model.fit`` under a multi-worker strategy.

    Validation is one of ``callbacks`` (it adds ``val_*`` entries to the
    epoch's logs, as with several replicas under ``fit``).
    ``stop_requested()`` is read at the end of every epoch (Ctrl-C); the
    decision is shared by all workers.
    """
    import keras
    import tensorflow as tf

    from .evaluation import make_loss

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    iterator = iter(strategy.experimental_distribute_dataset(train_ds.with_options(options)))
    loss_fn = make_loss(loss, label_smoothing, reduction=None)
    optimizer = model.optimizer
    scales_loss = hasattr(optimizer, "scale_loss")
    top5 = "top_5_accuracy" in metrics

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
        in_top5 = (tf.reduce_sum(tf.cast(tf.math.in_top_k(tf.cast(truth, tf.int32), probs, 5), tf.float32))
                   if top5 else tf.constant(0.0))
        count = tf.cast(tf.shape(images)[0], tf.float32)
        return tf.reduce_sum(per_example), correct, in_top5, count

    @tf.function(jit_compile=jit_compile)
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

    callback_list = keras.callbacks.CallbackList(callbacks, model=model, epochs=epochs, steps=steps,
                                                 verbose=0)
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


def weights_checksum(model) -> float:
    """A number every worker can print to show they hold the same weights."""
    return float(sum(np.sum(np.asarray(w, np.float64)) for w in model.get_weights()))
