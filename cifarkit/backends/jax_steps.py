"""The JAX backend's training steps on the device: the training split lives on the
accelerator (uint8), and one compiled program runs a chunk of steps (a
``lax.scan``), each gathering its batch, augmenting it, training on it and
applying the callbacks' on-device updates (``device_step``, e.g. lookahead).

The program is installed as the model's ``train_function``, so Keras's own
``fit`` loop drives it: callbacks, history, validation and ``stop_training``
work as ever, and see every chunk's end (``steps_per_execution``). The chunk has
one length for the whole run (a shorter last chunk masks its spare steps), so
the training step compiles once. Each step trains on exactly what the host
stream (:class:`cifarkit.backends.jax.TrainStream`) would give it: the same
permutation of the same pass and the same augmentation seeds.

A callback joins the step by defining ``device_step(step, weights, state) ->
(weights, state)`` in ``keras.ops`` (``step``: the run's 0-based step;
``weights``: the values of ``model.trainable_variables +
model.non_trainable_variables``), ``initial_device_state(weights)``, and a
``device_state`` attribute the backend keeps current after every chunk (what
its checkpoint state reads). It is told ``on_device = True`` and then leaves
its host-side hooks alone.
"""

from __future__ import annotations


import numpy as np

#: The chunk length "auto" gives on an accelerator. On a CPU it is one step: XLA's
#: CPU backend runs a scan over training steps about 20x slower than the steps one
#: by one (measured: benchmarks/jax_scan.py), and a CPU step is slow enough anyway.
AUTO_CHUNK = 32


def chunk_length(setting: int | str, steps: int) -> int:
    """Steps per compiled chunk for ``train.steps_per_execution`` (``"auto"`` or N)."""
    import jax

    if setting == "auto":
        return 1 if jax.default_backend() == "cpu" else min(steps, AUTO_CHUNK)
    return max(1, min(int(setting), steps))


def device_callbacks(callbacks: list) -> list:
    """The callbacks that update the weights inside the training step."""
    return [cb for cb in callbacks if callable(getattr(cb, "device_step", None))]


class DeviceTrainer:
    """The model's ``train_function`` for Keras's ``fit``: ``(state, iterator) ->
    (logs, state)``, ignoring the iterator (the data is already on the device).

    Args:
        model: the compiled Keras model.
        stream: the host stream whose batches this reproduces (indices, seeds).
        chunk: steps per call.
        steps: steps per epoch.
        hooks: callbacks with ``device_step``.
    """

    def __init__(self, model, stream, chunk: int, steps: int, hooks: list):
        import jax

        self.model, self.stream, self.chunk, self.steps = model, stream, chunk, steps
        self.hooks = hooks
        self.step = stream.step  # the run's next step
        self._where = _replicated()
        self.x = jax.device_put(stream.x, self._where)
        self.y = jax.device_put(stream.y, self._where)
        self._program = None
        for hook in hooks:
            hook.on_device = True
            hook.device_state = getattr(hook, "device_state", None)

    # Keras's fit calls this once per chunk of steps.
    def __call__(self, state, iterator):
        import jax

        active = min(self.chunk, self.steps - self.step % self.steps)
        last = self.step + active - 1  # a masked spare step repeats the last real batch
        batches = [self.stream.padded(min(self.step + i, last)) for i in range(self.chunk)]
        indices = np.stack([i for i, _ in batches]).astype(np.int32)
        weights = np.stack([w for _, w in batches])
        if self._program is None:  # the state lives on every device of the run
            self._shardings = jax.tree_util.tree_map(lambda a: self._where, state)
            self._program = self._compile(state, indices)
        # The same placement every call (Keras's metric resets, say, make new arrays),
        # so the program's cache key never changes: one compilation.
        state = jax.device_put(state, self._shardings)
        hook_states = jax.device_put(self._hook_states(state), self._where)
        logs, state, hook_states = self._program(
            state, hook_states, self.x, self.y, jax.device_put(indices, self._where),
            jax.device_put(weights, self._where), np.int32(self.step), np.int32(active))
        for hook, value in zip(self.hooks, hook_states):
            hook.device_state = value
        self.step += active
        self.stream.step = self.step
        return logs, state

    def _hook_states(self, state) -> list:
        weights = [*state[0], *state[1]]
        return [hook.device_state if hook.device_state is not None
                else hook.initial_device_state(weights) for hook in self.hooks]

    def _compile(self, state, indices):
        import jax

        model, augment, hooks = self.model, self.stream.augment, self.hooks
        n_trainable = len(state[0])
        batch_sharding = _batch_sharding(indices.shape[1:] + self.x.shape[1:])

        def program(state, hook_states, x, y, indices, weights, first, active):
            def one_step(carry, index, weight, step):
                state, hook_states, _ = carry
                images, labels = augment.traced(jax.numpy.take(x, index, axis=0),
                                                jax.numpy.take(y, index, axis=0), step)
                if batch_sharding is not None:
                    images = jax.lax.with_sharding_constraint(images, batch_sharding)
                logs, state = model.train_step(state, (images, labels, weight))
                if hooks:
                    state, hook_states = _apply_hooks(hooks, step, state, hook_states,
                                                      n_trainable)
                return state, hook_states, logs

            if indices.shape[0] == 1:  # one step a call: no loop (on XLA's CPU backend a
                # scan over training steps runs about 20x slower than the step alone)
                state, hook_states, logs = one_step((state, hook_states, None), indices[0],
                                                    weights[0], first)
                return logs, state, hook_states

            def body(carry, i):
                run = lambda c: one_step(c, indices[i], weights[i], first + i)  # noqa: E731
                return jax.lax.cond(i < active, run, lambda c: c, carry), None

            # zeros shaped like a step's logs (the scan carries them): traced, not run
            shapes = jax.eval_shape(lambda c: one_step(c, indices[0], weights[0], first)[2],
                                    (state, hook_states, None))
            logs = jax.tree_util.tree_map(lambda s: jax.numpy.zeros(s.shape, s.dtype), shapes)
            (state, hook_states, logs), _ = jax.lax.scan(
                body, (state, hook_states, logs), jax.numpy.arange(indices.shape[0]))
            return logs, state, hook_states

        return jax.jit(program, donate_argnums=(0,), out_shardings=(None, self._shardings, None))


def _apply_hooks(hooks: list, step, state, hook_states: list, n_trainable: int):
    """Each ``device_step`` in turn on the model's weights after a training step."""
    weights = [*state[0], *state[1]]
    new_states = []
    for hook, hook_state in zip(hooks, hook_states):
        weights, hook_state = hook.device_step(step, list(weights), hook_state)
        new_states.append(hook_state)
    trainable, fixed = list(weights[:n_trainable]), list(weights[n_trainable:])
    return type(state)((trainable, fixed, *state[2:])), new_states


def settle(model) -> None:
    """Put every model variable where training leaves it (on each device of the run's
    distribution), so programs compiled before training (the model check's forward
    pass) are the ones used after it."""
    import jax

    where = _replicated()
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)
    for variable in [*model.variables, *model.metrics_variables,
                     *(optimizer.variables if optimizer else [])]:
        variable.assign(jax.device_put(variable.value, where))


def _replicated():
    """Where the training split lives: on every device of the run's distribution."""
    import jax
    import keras

    distribution = keras.distribution.distribution()
    if distribution is None:
        return jax.sharding.SingleDeviceSharding(jax.devices()[0])
    mesh = distribution.device_mesh.backend_mesh
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def _batch_sharding(shape: tuple):
    """How a batch of images is split over the devices (None: one device)."""
    import keras

    distribution = keras.distribution.distribution()
    if distribution is None:
        return None
    return distribution.get_data_layout(shape).backend_layout
