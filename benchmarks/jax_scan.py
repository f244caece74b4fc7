#!/usr/bin/env python3
"""Eight training steps of a small conv net three ways, each timed three times:

    python benchmarks/jax_scan.py step|scan|cond [DTYPE_POLICY]

step: one jitted Keras train step per call; scan: the 8 steps as one
``lax.scan``; cond: the same scan with each step under ``lax.cond`` (as
cifarkit's chunks mask their spare steps). On XLA's CPU backend the scan runs
about 20x slower than the steps one by one, which is why cifarkit's "auto"
chunk is one step on a CPU (docs/backends.md).
"""
import os
import sys
import time

os.environ["KERAS_BACKEND"] = "jax"
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

mode = sys.argv[1]
keras.config.set_dtype_policy(sys.argv[2] if len(sys.argv) > 2 else "float32")
inp = keras.Input((32,32,3))
x = keras.layers.Conv2D(64,3,padding="same",activation="relu")(inp)
x = keras.layers.MaxPooling2D(2)(x)
x = keras.layers.BatchNormalization()(x)
x = keras.layers.Conv2D(128,3,padding="same",activation="relu")(x)
x = keras.layers.GlobalMaxPooling2D()(x)
out = keras.layers.Dense(10, activation="softmax", dtype="float32")(x)
m = keras.Model(inp, out)
m.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="categorical_crossentropy", metrics=["accuracy"])
B=128; X = jnp.asarray(np.random.rand(1024,32,32,3).astype(np.float32)); Y = jnp.asarray(np.eye(10,dtype=np.float32)[np.random.randint(0,10,1024)])
m.fit(np.asarray(X[:B]), np.asarray(Y[:B]), epochs=1, verbose=0)
state = m._get_jax_state(trainable_variables=True, non_trainable_variables=True, optimizer_variables=True, metrics_variables=True)
K=8
if mode == "step":
    f = jax.jit(m.train_step)
    def run(state):
        for i in range(K):
            logs, state = f(state, (X[i*B:(i+1)*B], Y[i*B:(i+1)*B]))
        return logs, state
elif mode in ("scan", "cond"):
    def prog(state, active):
        def body(c, i):
            s, l = c
            def st(c):
                s,_ = c
                l, s = m.train_step(s, (jax.lax.dynamic_slice_in_dim(X, i*B, B), jax.lax.dynamic_slice_in_dim(Y, i*B, B)))
                return s, l
            if mode == "cond":
                return jax.lax.cond(i < active, st, lambda c: c, c), None
            return st(c), None
        shapes = jax.eval_shape(lambda s: m.train_step(s, (X[:B], Y[:B]))[0], state)
        l0 = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        (s, l), _ = jax.lax.scan(body, (state, l0), jnp.arange(K))
        return l, s
    pj = jax.jit(prog)
    run = lambda state: pj(state, K)
for r in range(3):
    t=time.perf_counter(); logs, state = run(state); jax.block_until_ready(state); print(mode, r, round(time.perf_counter()-t,3))
