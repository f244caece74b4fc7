"""Distribution strategies for real: two logical CPUs, two worker processes on
loopback, TPU absent, devices absent, mixed precision and XLA options."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import cifarkit, cli, write_tiny_recipe

def recipe(tmp_path, data, name="dist", extra=""):
    return write_tiny_recipe(tmp_path / f"{name}.toml", data, name, 32, "[train]\nepochs = 2\n" + extra)


def summary_of(out_dir):
    (run_dir,) = out_dir.iterdir()
    return run_dir, json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow
def test_mirrored_over_two_logical_cpus(tmp_path, cifar10_dir):
    # 15 validation / 85 training / 40 test examples: batches that do not split
    # evenly over the replicas (Keras fails on those; cifarkit must not)
    r = recipe(tmp_path, cifar10_dir, extra=textwrap.dedent("""
        [strategy]
        plugin = "mirrored"
        devices = ["/cpu:0", "/cpu:1"]
        """))
    r.write_text(r.read_text().replace("batch_size = 32", "batch_size = 32\nvalidation_split = 0.15"))
    script = textwrap.dedent(f"""
        import sys
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from cifarkit.cli import main
        sys.exit(main(["run", {str(r)!r}, "--output", {str(tmp_path / 'runs')!r},
                       "--set", "train.learning_rate_scaling=linear"]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mirrored (2 replicas)" in result.stdout
    run_dir, s = summary_of(tmp_path / "runs")
    assert s["status"] == "completed" and s["replicas"] == 2
    assert (s["train_examples"], s["validation_examples"]) == (85, 15)
    assert s["learning_rate"] == pytest.approx(2e-3)  # linear scaling by the replica count
    assert 'learning_rate_scaling = "linear"' in (run_dir / "recipe.toml").read_text()


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_on_loopback(tmp_path, cifar10_dir):
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    r = recipe(tmp_path, cifar10_dir, name="two", extra=textwrap.dedent(f"""
        [strategy]
        plugin = "multi_worker_mirrored"
        workers = {json.dumps(workers)}
        communication = "ring"
        timeout_s = 90
        [[callbacks]]
        plugin = "model_checkpoint"
        """))
    out = tmp_path / "runs"
    worker_tmp = tmp_path / "tmp"  # the non-chief's temporary run directory goes here
    worker_tmp.mkdir()
    env = {**os.environ, "COLUMNS": "120", "TMPDIR": str(worker_tmp)}
    procs = [subprocess.Popen([sys.executable, "-m", "cifarkit", "run", str(r), "--output", str(out),
                               "--set", f"strategy.task_index={i}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(2)]
    try:
        outputs = [p.communicate(timeout=150) for p in procs]
    finally:
        for p in procs:  # never leave a worker behind, even when the test fails
            p.kill()
            p.wait()
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr[-3000:]
    chief_out, worker_out = outputs[0][0], outputs[1][0]
    assert "2 workers, this is the chief" in chief_out and "test accuracy" in chief_out
    assert "worker 1 of 2 finished" in worker_out and "epoch 1/2" not in worker_out
    # exactly one run directory, the chief's, and complete
    run_dir, s = summary_of(out)
    assert {"recipe.toml", "metrics.csv", "timing.csv", "summary.json", "model.keras", "accuracy.png",
            "loss.png", "learning_rate.png", "confusion_matrix.png",
            "confusion_matrix_normalized.png", "run.log", "checkpoints", ".signature",
            "checkpoint"} == {p.name for p in run_dir.iterdir()}
    assert s["status"] == "completed" and s["workers"] == 2 and s["replicas"] == 2 and s["epochs_run"] == 2
    # both workers hold the same weights and measure the same test metrics
    fields = dict(kv.split("=") for kv in worker_out.split("finished: ")[1].split(" (")[0].split())
    assert float(fields["weights_checksum"]) == pytest.approx(s["weights_checksum"], rel=1e-6)
    assert float(fields["test_accuracy"]) == pytest.approx(s["test_accuracy"], abs=1e-6)
    assert float(fields["test_loss"]) == pytest.approx(s["test_loss"], rel=1e-5)
    assert not [p for p in worker_tmp.iterdir() if p.name.startswith("cifarkit-worker")]


def test_tpu_without_a_tpu_fails_fast(tmp_path, cifar10_dir):
    start = time.monotonic()
    result = cli("run", str(recipe(tmp_path, cifar10_dir)), "--set", "strategy.plugin=tpu",
                 "--output", str(tmp_path / "runs"), env={"TPU_NAME": ""})
    assert time.monotonic() - start < 30
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "tpu: no TPU to connect to" in line and "TPU_NAME is unset" in line
    assert not (tmp_path / "runs").exists()


def test_unreachable_tpu_address_times_out(tmp_path, cifar10_dir):
    start = time.monotonic()
    result = cifarkit("run", str(recipe(tmp_path, cifar10_dir)), "--set", "strategy.plugin=tpu",
                      "--set", "strategy.tpu=grpc://127.0.0.1:9", "--set", "strategy.timeout_s=3",
                      "--output", str(tmp_path / "runs"))
    assert time.monotonic() - start < 30
    assert result.returncode == 2 and "grpc://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_gpu_is_a_clear_error(tmp_path, cifar10_dir):
    result = cli("run", str(recipe(tmp_path, cifar10_dir)), "--set", "strategy.plugin=one_device",
                 "--set", "strategy.device=/gpu:7", "--output", str(tmp_path / "runs"))
    assert result.returncode == 2
    assert "device '/gpu:7' is not present on this machine (available: /device:CPU:0" in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("sets, fragment", [
    (["strategy.plugin=multi_worker_mirrored"], "no cluster: set strategy.workers"),
    (["strategy.plugin=multi_worker_mirrored", 'strategy.workers=["127.0.0.1:1"]'],
     "strategy.task_index is not"),
    (["strategy.plugin=multi_worker_mirrored", 'strategy.workers=["nohost"]', "strategy.task_index=0"],
     "is not host:port"),
])
def test_multi_worker_configuration_errors(tmp_path, cifar10_dir, sets, fragment):
    args = [a for s in sets for a in ("--set", s)]
    result = cli("run", str(recipe(tmp_path, cifar10_dir)), *args, "--output", str(tmp_path / "runs"),
                 env={"TF_CONFIG": ""})
    assert result.returncode == 2 and fragment in result.stderr


@pytest.mark.slow
def test_mixed_precision_and_xla(tmp_path, cifar10_dir):
    result = cli("run", str(recipe(tmp_path, cifar10_dir)), "--set",
                 "train.mixed_precision=mixed_bfloat16", "--set", "train.jit_compile=true",
                 "--set", "train.epochs=1", "--output", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir, s = summary_of(tmp_path / "runs")
    assert s["mixed_precision"] == "mixed_bfloat16" and s["status"] == "completed"
    check = textwrap.dedent(f"""
        import keras
        model = keras.models.load_model({str(run_dir / 'model.keras')!r})
        print(model.layers[2].dtype_policy.name, model.layers[-1].dtype_policy.name,
              keras.backend.standardize_dtype(model.outputs[0].dtype))
    """)
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert out.stdout.split() == ["mixed_bfloat16", "float32", "float32"], out.stderr[-2000:]
