"""The JAX backend: the same recipes, plugins and run directory, without TensorFlow.

Runs happen in subprocesses (Keras picks its backend once per process); the
JAX ones with tests/no_tensorflow on PYTHONPATH, which makes `import
tensorflow` fail and logs every attempt, so an attempt something swallows is
caught too.
"""

import csv
import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

from cifarkit.backends import get

from conftest import (ROOT, assert_same_epochs, cifarkit, cli, metrics, stopped_run, summary,
                      write_slow_recipe, write_tiny_recipe)

# Not imported here: importing jax sets TF_CPP_MIN_LOG_LEVEL=1 in this process,
# which every later subprocess would inherit (TensorFlow's warnings then show).
if importlib.util.find_spec("jax") is None:
    pytest.skip("the jax extra is not installed", allow_module_level=True)

BLOCK = str(ROOT / "tests" / "no_tensorflow")

# Every built-in callback but reduce_lr_on_plateau, which cannot share the rate
# with warmup_decay; the JAX resume tests below use it.
EVERY_CALLBACK = """\
[strategy]
plugin = "one_device"
[train]
epochs = 2
steps_per_epoch = 4
mixed_precision = "mixed_bfloat16"
tta = "flip"
[[callbacks]]
plugin = "model_checkpoint"
[[callbacks]]
plugin = "csv_logger"
[[callbacks]]
plugin = "tensorboard"
histogram_freq = 1
update_freq = "batch"
[[callbacks]]
plugin = "warmup_decay"
[[callbacks]]
plugin = "lookahead"
start_epoch = 0
every = 2
"""


def no_tf(tmp_path, **extra):
    """Environment for a subprocess that cannot import TensorFlow (attempts are logged)."""
    return {"PYTHONPATH": BLOCK, "CIFARKIT_BLOCKED_LOG": str(tmp_path / "blocked.log"), **extra}


def assert_no_tensorflow(tmp_path):
    log = tmp_path / "blocked.log"
    assert not log.exists(), log.read_text()[-3000:]


def evaluate_json(run_dir, backend, env=None):
    result = cifarkit("evaluate", str(run_dir), "--json", "--backend", backend, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


@pytest.mark.slow
def test_a_recipe_runs_on_jax_without_tensorflow_and_its_model_loads_on_both(tmp_path,
                                                                            cifar10_dir):
    from conftest import cli_session

    recipe = write_tiny_recipe(tmp_path / "r.toml", cifar10_dir, "every", 16, EVERY_CALLBACK)
    image = tmp_path / "cat.png"
    from PIL import Image
    Image.new("RGB", (32, 32), (200, 100, 50)).save(image)
    only = f"{{only:{tmp_path / 'runs'}}}"
    # train, evaluate and predict on JAX, in one process without TensorFlow
    result, evaluated, predicted = cli_session([
        (["run", recipe, "--backend", "jax", "-o", tmp_path / "runs"], None),
        (["evaluate", only, "--json", "--backend", "jax"], None),
        (["predict", only, image, "--json"], None)], env=no_tf(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_no_tensorflow(tmp_path)
    (run_dir,) = (tmp_path / "runs").iterdir()
    s = summary(run_dir)
    assert s["status"] == "completed" and s["backend"] == "jax"
    assert "jax" in s["versions"] and "tensorflow" not in s["versions"]
    assert 'backend = "jax"' in (run_dir / "recipe.toml").read_text()
    assert s["compile_time_s"] is not None and s["steady_train_time_s"] > 0
    for name in ("model.keras", "checkpoints/best.keras", "training_log.csv", "accuracy.png",
                 "confusion_matrix.png"):
        assert (run_dir / name).is_file(), name
    events = list((run_dir / "tensorboard").glob("*/events.out.tfevents.*"))
    assert {e.parent.name for e in events} == {"train", "validation"}
    lrs = [float(r["learning_rate"]) for r in metrics(run_dir)]
    assert lrs[0] != lrs[1]  # warmup_decay's schedule moved the rate inside the jitted step

    # evaluate and predict on JAX; then the same model on TensorFlow (in this process).
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    on_jax = json.loads(evaluated.stdout)
    assert on_jax["accuracy"] == pytest.approx(s["test_accuracy"], abs=1e-9)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert len(json.loads(predicted.stdout)[0]["predictions"]) == 3
    on_tf = json.loads(cli("evaluate", str(run_dir), "--json", "--backend", "tensorflow").stdout)
    assert on_tf["accuracy"] == pytest.approx(s["test_accuracy"], abs=1 / 40 + 1e-9)
    assert on_tf["loss"] == pytest.approx(on_jax["loss"], rel=0.02)


@pytest.mark.slow
def test_a_tensorflow_model_loads_on_jax(tmp_path, cifar10_dir):
    recipe = write_tiny_recipe(tmp_path / "r.toml", cifar10_dir, "tf", 16,
                               '[strategy]\nplugin = "one_device"\n[train]\nepochs = 1\n')
    result = cli("run", str(recipe), "-o", str(tmp_path / "runs"))  # TensorFlow, here
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    on_jax = evaluate_json(run_dir, "jax", no_tf(tmp_path))
    assert_no_tensorflow(tmp_path)
    assert on_jax["accuracy"] == pytest.approx(summary(run_dir)["test_accuracy"], abs=1 / 40 + 1e-9)
    assert on_jax["loss"] == pytest.approx(summary(run_dir)["test_loss"], rel=0.02)


@pytest.mark.slow
def test_ctrl_c_and_resume_on_jax_match_the_uninterrupted_run(tmp_path, cifar10_dir):
    from conftest import cli_session, stop_at

    recipe = write_slow_recipe(tmp_path, cifar10_dir, epochs=3, steps=6)
    extra, env = stop_at(2, 3, "int")
    whole, stopped, resumed = cli_session([  # one JAX process, without TensorFlow
        (["run", recipe, "--backend", "jax", "-o", tmp_path / "whole"], None),
        (["run", recipe, "--backend", "jax", "-o", tmp_path / "parts", *extra], env),
        (["run", "--resume", f"{{only:{tmp_path / 'parts'}}}"], None)],  # recipe.toml: jax
        env=no_tf(tmp_path))
    assert whole.returncode == 0, whole.stderr[-2000:]
    (run_dir,) = (tmp_path / "parts").iterdir()
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    assert "interrupted after 1 completed epoch(s)" in " ".join(stopped.stdout.split())
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_no_tensorflow(tmp_path)
    (whole_dir,) = (tmp_path / "whole").iterdir()
    assert_same_epochs(whole_dir, run_dir, 3, rel=1e-4)


@pytest.mark.slow
def test_kill_9_then_resume_on_jax(tmp_path, cifar10_dir):
    recipe = write_slow_recipe(tmp_path, cifar10_dir, epochs=3, steps=4)
    killed, run_dir = stopped_run(tmp_path, recipe, 2, 2, "kill", "--backend", "jax",
                                  env=no_tf(tmp_path))
    assert killed.returncode == -9 and len(metrics(run_dir)) == 1
    resumed = cifarkit("run", "--resume", str(run_dir), env=no_tf(tmp_path))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert summary(run_dir)["status"] == "completed" and len(metrics(run_dir)) == 3
    assert_no_tensorflow(tmp_path)


@pytest.mark.slow
def test_data_parallel_splits_batches_over_two_devices(tmp_path, cifar10_dir):
    recipe = write_tiny_recipe(tmp_path / "r.toml", cifar10_dir, "dp", 16,
                               '[strategy]\nplugin = "data_parallel"\n[train]\nepochs = 2\n')
    env = no_tf(tmp_path, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    result = cifarkit("run", str(recipe), "--backend", "jax", "-o", str(tmp_path / "runs"), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    s = summary(run_dir)
    assert s["replicas"] == 2 and s["status"] == "completed"
    assert s["validation_examples"] % 16  # validation's last batch was padded, not dropped
    assert_no_tensorflow(tmp_path)


JAX_REFUSALS = [
    (["strategy.plugin=tpu"], "tpu: JAX sees no TPU on this machine (devices: cpu:0)"),
    (["strategy.plugin=tpu", 'strategy.tpu="my-tpu"'],
     "tpu: strategy.tpu connects to a remote TPU, which only the tensorflow backend does"),
    (["strategy.plugin=one_device", 'strategy.device="/gpu:0"'],
     "device '/gpu:0' is not present on this machine (available: cpu:0)"),
    (["strategy.plugin=mirrored", 'strategy.cross_device_ops="nccl"'],
     "chooses a tf.distribute all-reduce; on the jax backend XLA chooses it"),
]


@pytest.mark.slow
def test_jax_strategies_that_cannot_start_are_one_line(tmp_path, cifar10_dir):
    """Each refusal in one JAX process without TensorFlow (one start for them all)."""
    from conftest import cli_session

    recipe = write_tiny_recipe(tmp_path / "r.toml", cifar10_dir, "s", 16)
    results = cli_session([(["run", recipe, *[a for s in sets for a in ("--set", s)],
                             "--backend", "jax", "-o", tmp_path / f"runs{i}"], None)
                           for i, (sets, _) in enumerate(JAX_REFUSALS)], env=no_tf(tmp_path))
    for i, (result, (_, fragment)) in enumerate(zip(results, JAX_REFUSALS)):
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
        assert fragment in result.stderr
        runs = tmp_path / f"runs{i}"
        assert not runs.exists() or not any(runs.iterdir())


def test_every_built_in_strategy_has_a_form_for_each_backend(registry):
    for name in registry.names("strategy"):
        info = registry.get("strategy", name)
        assert set(info.backends) == {"tensorflow", "jax"}, name
        forms = [registry.variant("strategy", name, get(b)) for b in info.backends]
        assert [p.name for p in forms[0].params] == [p.name for p in forms[1].params]
        assert forms[0].factory is not forms[1].factory


def test_two_callbacks_that_set_the_learning_rate_are_refused(registry, write):
    from cifarkit.errors import RecipeError
    from cifarkit.core.recipe import load_recipe

    path = write("r.toml", f'extends = "{ROOT / "recipes" / "default.toml"}"\n'
                           '[[callbacks]]\nplugin = "warmup_decay"\n'
                           '[[callbacks]]\nplugin = "reduce_lr_on_plateau"\n')
    with pytest.raises(RecipeError, match=r"callbacks\[\d\]: warmup_decay and "
                                          "reduce_lr_on_plateau both set the learning rate"):
        load_recipe(path, [], registry)


def test_keras_backend_and_train_backend(monkeypatch):
    from cifarkit import backends as framework
    from cifarkit.errors import RecipeError

    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert framework.requested(None) == "jax"
    assert framework.requested("tensorflow") == "tensorflow"  # the recipe or --backend wins
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    with pytest.raises(RecipeError, match="KERAS_BACKEND=torch: cifarkit runs on the "
                                          "tensorflow or jax backend"):
        framework.requested(None)
    monkeypatch.delenv("KERAS_BACKEND")
    assert framework.requested(None) == "tensorflow"


@pytest.mark.slow
def test_augmentation_on_jax_is_the_same_kind_as_on_tensorflow(tmp_path):
    """random_flip mirrors about half the images on both backends; a batch's
    augmentation depends on its position in the stream, not on what ran before."""
    script = textwrap.dedent("""
        import json, sys
        import numpy as np
        from cifarkit.backends.jax import Augmenter
        from cifarkit_plugins.augmentations import random_flip
        layer = random_flip(seed=3)
        images = np.tile(np.arange(32, dtype=np.float32)[None, None, :, None], (256, 32, 1, 3))
        layer(images[:2], training=True)
        augment = Augmenter([layer], ["random_flip"])
        labels = np.zeros((256, 10), np.float32)
        out = [np.asarray(augment(images, labels, step)[0]) for step in (0, 1, 0)]
        flipped = [float((o[:, 0, 0, 0] == 31).mean()) for o in out]
        kept = all(((o == images) | (o == images[:, :, ::-1])).all() for o in out)
        print(json.dumps({"flipped": flipped, "kept": kept, "same": bool((out[0] == out[2]).all()),
                          "differ": bool((out[0] != out[1]).any())}))
    """)
    env = {**os.environ, **no_tf(tmp_path), "KERAS_BACKEND": "jax"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["kept"] and got["same"] and got["differ"]
    assert all(0.35 < f < 0.65 for f in got["flipped"])

    import numpy as np
    from cifarkit_plugins.augmentations import random_flip
    images = np.tile(np.arange(32, dtype=np.float32)[None, None, :, None], (256, 32, 1, 3))
    out = np.asarray(random_flip(seed=3)(images, training=True))
    assert 0.35 < float((out[:, 0, 0, 0] == 31).mean()) < 0.65  # TensorFlow: the same kind
    assert_no_tensorflow(tmp_path)


@pytest.mark.slow
def test_two_jax_workers_on_loopback_train_as_one_process_with_two_devices(tmp_path, cifar10_dir):
    """The default recipe's mirrored runs unchanged on JAX; multi_worker_mirrored on JAX: jax.distributed over two processes (gloo on the
    CPU), each feeding half of every global batch, trains what one process with two
    devices (mirrored) trains, and the chief alone writes the run directory."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    base = write_tiny_recipe(tmp_path / "r.toml", cifar10_dir, "mw", 32,
                             "[train]\nepochs = 2\n")
    workers = json.dumps([f"127.0.0.1:{port}", "127.0.0.1:1"])
    env = {**os.environ, "COLUMNS": "120", "TMPDIR": str(tmp_path), **no_tf(tmp_path)}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "cifarkit", "run", str(base), "--backend", "jax",
         "-o", str(tmp_path / "multi"), "--set", "strategy.plugin=multi_worker_mirrored",
         "--set", f"strategy.workers={workers}", "--set", f"strategy.task_index={i}",
         "--set", "strategy.timeout_s=60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    try:
        outputs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    for p, (_, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr[-3000:]
    assert "2 workers, this is the chief" in outputs[0][0]
    assert "worker 1 of 2 finished" in outputs[1][0]
    (run_dir,) = (tmp_path / "multi").iterdir()
    s = summary(run_dir)
    assert s["status"] == "completed" and s["workers"] == 2 and s["replicas"] == 2
    fields = dict(kv.split("=") for kv in outputs[1][0].split("finished: ")[1].split(" (")[0].split())
    assert float(fields["weights_checksum"]) == pytest.approx(s["weights_checksum"], rel=1e-6)
    assert float(fields["test_accuracy"]) == pytest.approx(s["test_accuracy"], abs=1e-6)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("cifarkit-worker")]

    one = cifarkit("run", str(base), "--backend", "jax", "-o", str(tmp_path / "one"),
                   env=no_tf(tmp_path, XLA_FLAGS="--xla_force_host_platform_device_count=2"))
    assert one.returncode == 0, one.stderr[-3000:]
    (single,) = (tmp_path / "one").iterdir()
    # the recipe's mirrored (the default recipe's strategy) ran unchanged on JAX: data
    # parallel over every local device
    assert summary(single)["strategy"] == "mirrored" and summary(single)["replicas"] == 2
    assert "mirrored (2 replicas)" in one.stdout
    assert_same_epochs(single, run_dir, 2, rel=2e-3)
    assert_no_tensorflow(tmp_path)


def _cached_run(tmp_path, cifar10_dir, out, cache_home, *extra):
    """The tiny default recipe on JAX, one epoch, with its compilation cache under cache_home."""
    recipe = tmp_path / "cache.toml"
    if not recipe.exists():  # written once: runs started together read it at once
        write_tiny_recipe(recipe, cifar10_dir, "c", 16)
    return start_jax_run(["run", str(recipe), "--backend", "jax", "--set", "train.epochs=1",
                          "-o", str(out), *extra],
                         no_tf(tmp_path, XDG_CACHE_HOME=str(cache_home)))


def finish(proc, timeout=400):
    """``(return code, stderr)`` of a started run (its pipes drained: no deadlock)."""
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def start_jax_run(args, env):
    return subprocess.Popen([sys.executable, "-m", "cifarkit", *args], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_warm_compilation_cache_cuts_compile_time_and_is_shared_safely(tmp_path, cifar10_dir):
    cache = tmp_path / "cache"
    first = _cached_run(tmp_path, cifar10_dir, tmp_path / "first", cache)
    rc, err = finish(first)
    assert rc == 0, err[-3000:]
    (cold,) = (tmp_path / "first").iterdir()
    folder = cache / "cifarkit" / "jax"
    assert summary(cold)["compilation_cache"] == str(folder)
    assert (folder.stat().st_mode & 0o777) == 0o700 and any(folder.iterdir())
    # two runs at once on the warm cache: both succeed, both compile far less
    both = [_cached_run(tmp_path, cifar10_dir, tmp_path / f"warm{i}", cache) for i in range(2)]
    for proc in both:
        rc, err = finish(proc)
        assert rc == 0, err[-3000:]
    cold_s = summary(cold)["compile_time_s"]
    for i in range(2):
        (warm,) = (tmp_path / f"warm{i}").iterdir()
        s = summary(warm)
        assert s["status"] == "completed"
        assert s["compile_time_s"] <= 0.25 * cold_s, (s["compile_time_s"], cold_s)
        assert s["steady_train_time_s"] + sum(
            float(r["compile_time_s"]) for r in csv.DictReader((warm / "timing.csv").open())
        ) == pytest.approx(s["train_time_s"], abs=1e-3)  # summary and timing.csv agree
    assert_no_tensorflow(tmp_path)


@pytest.mark.slow
def test_a_compilation_cache_others_can_write_to_is_refused(tmp_path, cifar10_dir):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    proc = _cached_run(tmp_path, cifar10_dir, tmp_path / "runs", tmp_path / "home",
                     "--compilation-cache", str(shared))
    rc, err = finish(proc)
    assert rc == 2, err[-3000:]
    assert err.count("\n") == 1 and "can be written by other users (mode 777)" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_the_compilation_cache_setting(tmp_path, monkeypatch):
    from cifarkit.files import cache_folder
    from cifarkit.errors import CifarkitError

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder("off", "jax") is None and not (tmp_path / "xdg").exists()
    auto = cache_folder("auto", "jax")
    assert auto == tmp_path / "xdg" / "cifarkit" / "jax" and (auto.stat().st_mode & 0o777) == 0o700
    assert cache_folder(str(tmp_path / "mine"), "jax") == tmp_path / "mine"
    (tmp_path / "theirs").mkdir(mode=0o775)
    (tmp_path / "theirs").chmod(0o775)
    with pytest.raises(CifarkitError, match=r"can be written by other users \(mode 775\)"):
        cache_folder(str(tmp_path / "theirs"), "jax")
