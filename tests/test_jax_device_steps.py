"""The JAX backend's training steps on the device (cifarkit/backends/jax_steps.py):
they train on exactly what the host stream gives, chunked or not, lookahead runs
in the step as it runs on the host, and a run compiles each program once.

JAX runs in a subprocess, one for the module (importing it here would change the
environment later subprocesses inherit; see test_jax_backend.py).
"""

import importlib.util
import re
import subprocess
import sys
import tempfile
import textwrap

import pytest

from conftest import ROOT, cifarkit, summary

if importlib.util.find_spec("jax") is None:
    pytest.skip("the jax extra is not installed", allow_module_level=True)


#: One JAX interpreter per test process, started on first use: it runs ``SETUP`` once,
#: then each test's code in a fresh copy of SETUP's names (one JAX start, not four).
SERVER = r"""
import contextlib, io, json, sys, traceback
base = {}
exec(compile(sys.argv[1], "SETUP", "exec"), base)
for line in sys.stdin:
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(json.loads(line), "test", "exec"), dict(base))
        reply = {"out": out.getvalue()}
    except BaseException:
        reply = {"out": out.getvalue(), "error": traceback.format_exc()}
    sys.__stdout__.write(json.dumps(reply) + "\n")
    sys.__stdout__.flush()
"""
_server: list = []


@pytest.fixture(scope="module", autouse=True)
def _close_server():
    yield
    for proc in _server:
        proc.stdin.close()
        proc.wait(timeout=60)
    _server.clear()


def run_python(code: str) -> str:
    """Run ``code`` (indented as in the test) after ``SETUP`` in this module's JAX
    interpreter; what it printed."""
    import json
    import select

    if not _server:
        _server.append(subprocess.Popen(
            [sys.executable, "-c", SERVER, SETUP], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
            env={"KERAS_BACKEND": "jax", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                 "HOME": tempfile.mkdtemp()}))
    proc = _server[0]
    proc.stdin.write(json.dumps(textwrap.dedent(code)) + "\n")
    proc.stdin.flush()
    ready, _, _ = select.select([proc.stdout], [], [], 600)
    assert ready, "the JAX interpreter gave no answer in 10 minutes"
    line = proc.stdout.readline()
    assert line, f"the JAX interpreter ended (exit status {proc.wait()})"
    reply = json.loads(line)
    assert "error" not in reply, reply.get("error", "")[-4000:]
    return reply["out"]


SETUP = """
import numpy as np, jax, keras
from cifarkit.backends.jax import Augmenter, TrainStream
from cifarkit.backends.jax_steps import DeviceTrainer

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 40)]
layers = [keras.layers.RandomFlip("horizontal", seed=1),
          keras.layers.RandomTranslation(0.25, 0.25, fill_mode="reflect",
                                         interpolation="nearest", seed=2)]

def model():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255),
                          keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization(),
                          keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    m.compile(keras.optimizers.SGD(0.1, momentum=0.9), "categorical_crossentropy",
              metrics=["accuracy"])
    m._symbolic_build(data_batch=(np.zeros((8, 8, 8, 3), np.float32), y[:8]))  # as fit does
    return m

def state_of(m):
    return m._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                            optimizer_variables=True, metrics_variables=True)

def flat(state):
    return np.concatenate([np.ravel(np.asarray(a, np.float64))
                           for a in jax.tree_util.tree_leaves(state[:2])])
"""


def test_the_device_steps_train_on_what_the_host_stream_gives():
    """Two epochs of 4 steps (batch 8 of 34 images: the partial batch is left out), in
    chunks of 3 (a masked spare step) and of 1, against the host stream's batches
    through Keras's own jitted train step."""
    out = run_python("""
    augment = Augmenter(layers, ["flip", "translate"])
    host = TrainStream(x[:34], y[:34], 8, augment, 7, True, True, 0)
    assert host.steps == 4
    step = jax.jit(model().train_step)
    m = model()
    state = state_of(m)
    for s in range(8):
        i = host.indices(s)
        traced, _ = jax.jit(augment.traced)(x[:34][i], y[:34][i], np.int32(s))
        images, labels = augment(x[:34][i], y[:34][i], s)
        np.testing.assert_allclose(np.asarray(traced), np.asarray(images))
        _, state = step(state, (images, labels))
    expected = flat(state)
    for chunk in (3, 1):
        m = model()
        stream = TrainStream(x[:34], y[:34], 8, augment, 7, True, True, 0)
        trainer = DeviceTrainer(m, stream, chunk, 4, [])
        state, calls = state_of(m), 0
        while trainer.step < 8:
            _, state = trainer(state, None)
            calls += 1
        np.testing.assert_allclose(flat(state), expected, rtol=2e-5, atol=2e-6)
        print(chunk, calls, trainer._program._cache_size())
    """)
    assert out.split() == ["3", "4", "1", "1", "8", "1"]  # one compilation each


def test_a_partial_batch_padded_with_zero_weights_trains_as_the_partial_batch_alone():
    """34 images, batch 8: 5 steps a pass, the fifth has 2 images filled up with 6 of
    weight 0. Without batch statistics in the model, its step equals Keras's own step on
    the 2 images alone; the device steps train on every image of the pass, one
    compilation."""
    out = run_python("""
    def plain():
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")])
        m.compile(keras.optimizers.SGD(0.1, momentum=0.9), "categorical_crossentropy",
                  metrics=["accuracy"])
        m._symbolic_build(data_batch=(np.zeros((8, 8, 8, 3), np.float32), y[:8]))
        return m

    augment = Augmenter([], [])
    host = TrainStream(x[:34], y[:34], 8, augment, 7, True, False, 0)
    assert host.steps == 5
    seen = np.concatenate([host.padded(s)[0][host.padded(s)[1] > 0] for s in range(5)])
    assert sorted(seen.tolist()) == list(range(34))  # every image once a pass
    step = jax.jit(plain().train_step)
    state = state_of(plain())
    for s in range(5):
        i = host.indices(s)
        _, state = step(state, (x[:34][i].astype(np.float32), y[:34][i]))
    expected = flat(state)
    m = plain()
    trainer = DeviceTrainer(m, TrainStream(x[:34], y[:34], 8, augment, 7, True, False, 0),
                            1, 5, [])
    state = state_of(m)
    while trainer.step < 5:
        _, state = trainer(state, None)
    np.testing.assert_allclose(flat(state), expected, rtol=2e-5, atol=2e-6)
    print(trainer._program._cache_size())
    """)
    assert out.split() == ["1"]


def test_lookahead_in_the_step_matches_lookahead_on_the_host():
    """The built-in lookahead's on-device update against its host hooks, over three
    epochs of five steps of a stand-in training that moves every weight."""
    run_python("""
    from cifarkit_plugins._callbacks import Lookahead

    steps, epochs = 5, 3
    def train(weights, t):  # a stand-in for a training step
        return [w + np.float32(0.1 * (t + 1)) * np.cos(np.float32(t) + w) for w in weights]

    m = model()
    start = [np.asarray(w) for w in m.get_weights()]
    host = Lookahead(1, 2, 0.9, 2.0)
    host.set_model(m)
    host.set_params({"steps": steps, "epochs": epochs})
    for e in range(epochs):
        host.on_epoch_begin(e)
        for b in range(steps):
            m.set_weights(train(m.get_weights(), e * steps + b))
            host.on_train_batch_end(b)
        host.on_epoch_end(e)
    expected = m.get_weights()

    device = Lookahead(1, 2, 0.9, 2.0)
    device.set_params({"steps": steps, "epochs": epochs})
    weights = [np.asarray(w) for w in start]
    state = device.initial_device_state(weights)
    update = jax.jit(device.device_step)
    for t in range(steps * epochs):
        weights, state = update(np.int32(t), train([np.asarray(w) for w in weights], t), state)
    for got, want in zip(weights, expected):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)
    device.device_state = state
    saved = device.get_state()["average"]
    assert saved is not None and len(saved) == len(expected)
    """)


def test_variables_created_together_equal_keras_own_initialisation():
    """keras_internals.initialising: the weights a model gets when its variables are
    initialised together (one compiled program) are the ones Keras's eager
    initialisation gives; an initializer that is not Keras's own still runs, and
    assignments made while building (set_weights) are kept."""
    run_python("""
    from cifarkit.backends.keras_internals import initialising

    class Halves(keras.initializers.Initializer):  # a user's own initializer
        def __call__(self, shape, dtype=None):
            return keras.ops.full(shape, 0.5, dtype=dtype)

    def build():
        keras.utils.set_random_seed(3)
        m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.BatchNormalization(),
                              keras.layers.Dense(2, kernel_initializer=Halves())])
        m.layers[0].set_weights([np.ones((3, 3, 3, 4), np.float32), np.arange(4.0)])
        return m

    eager = build()
    count = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **kw: count.append(event)
        if event == "/jax/core/compile/backend_compile_duration" else None)
    with initialising():
        together = build()
    assert len(count) <= 2, count  # one program (plus at most one for the assignment)
    for a, b in zip(eager.weights, together.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a.value), np.asarray(b.value), err_msg=a.path)
    assert np.all(np.asarray(together.layers[0].kernel.value) == 1)
    assert np.all(np.asarray(together.layers[2].kernel.value) == 0.5)
    optimizer = keras.optimizers.Adam()
    with initialising():
        optimizer.build(together.trainable_variables)
    assert all(np.all(np.asarray(v.value) == 0) for v in optimizer.variables[2:])
    """)


@pytest.mark.slow
def test_a_fast_recipe_run_compiles_each_program_once(tmp_path, cifar10_dir):
    """recipes/fast.toml (a narrow airbench) on JAX: the training program, the validation
    step and the predict step compile once each (no recompilation after the first
    epoch, none in evaluation or test-time augmentation), and building compiles
    little besides: JAX's own log of its compilations, counted."""
    result = cifarkit("run", str(ROOT / "recipes" / "fast.toml"), "--backend", "jax",
                      "--set", f"data.path={cifar10_dir}", "--set", "data.batch_size=16",
                      "--set", "model.widths=[8, 16, 16]", "--set", "train.epochs=3",
                      "--set", "callbacks[1].start_epoch=1", "--set", "callbacks[1].every=2",
                      "--set", "train.compilation_cache=off", "-o", str(tmp_path / "runs"),
                      env={"JAX_LOG_COMPILES": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    compiled = re.findall(r"Finished XLA compilation of (\S+)", result.stderr)
    programs = [name for name in compiled if name.startswith("jit(")
                and name in ("jit(program)", "jit(test_step)", "jit(predict_step)")]
    assert sorted(programs) == ["jit(predict_step)", "jit(program)", "jit(test_step)"], compiled
    assert len(compiled) <= 20, compiled  # the bound for a whole run
    # the weights are created together, not one initializer at a time
    assert not [name for name in compiled if "uniform" in name or "normal" in name], compiled
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert summary(run_dir)["status"] == "completed"
