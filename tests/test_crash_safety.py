"""Crash-safe runs: one process per run directory, native crashes on record,
debris from a kill cleaned by the next resume."""

import signal
import socket
import subprocess
import time

import pytest

from cifarkit import OutputError
from cifarkit.runs.artifacts import read_summary
from cifarkit.runs.lock import RunLock, is_locked
from conftest import (DEFAULT_RECIPE, cifarkit, cli, interrupted_run, metrics, slow_run, stopped_run,
                      summary, write_slow_recipe)

SEGFAULT_PLUGIN = '''
import ctypes

import cifarkit


def crash_after(run_dir, epoch: int = 1):
    """Dereference a null pointer once ``epoch`` epochs are done (a stand-in for a native crash)."""
    import keras

    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, index, logs=None):
            if index == epoch:
                ctypes.string_at(0)

    return Crash()


@cifarkit.hookimpl
def register_callbacks(register):
    register(crash_after)
'''


def test_the_lock_admits_one_holder_and_dies_with_it(tmp_path):
    with RunLock(tmp_path):
        assert is_locked(tmp_path)
        with pytest.raises(OutputError, match=rf"in use by process \d+ on {socket.gethostname()}"):
            RunLock(tmp_path).acquire()
    assert not is_locked(tmp_path)
    with RunLock(tmp_path):  # released: the next one gets it
        pass


@pytest.mark.slow
def test_resume_of_a_run_that_is_still_training_is_refused(tmp_path, cifar10_dir):
    with slow_run(tmp_path, cifar10_dir, 1) as (proc, run_dir):
        s = summary(run_dir)
        assert s["pid"] == proc.pid and s["host"] == socket.gethostname()
        second = cli("run", "--resume", str(run_dir))
        assert second.returncode == 2, second.stderr[-2000:]
        assert second.stderr.strip() == (
            f"cifarkit: error: {run_dir}: in use by process {proc.pid} on {socket.gethostname()}; "
            "wait for it to finish or stop it (Ctrl-C), then resume")
        assert proc.poll() is None  # the first one is untouched
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # the killed process's lock does not block; its debris is swept
    (run_dir / ".model.abc123.keras").write_bytes(b"half")
    (run_dir / ".summary.json.x1.tmp").write_text("{")
    (run_dir / ".checkpoint-pending").mkdir(exist_ok=True)
    assert summary(run_dir)["status"] == "running" and read_summary(run_dir)["status"] == "crashed"
    result = cli("run", "--resume", str(run_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    left = {p.name for p in run_dir.iterdir() if p.name.startswith(".")}
    assert left <= {".lock", ".signature"}, left


@pytest.mark.slow
def test_a_native_crash_lands_in_run_log_and_resumes(tmp_path, cifar10_dir):
    plugin = tmp_path / "crash.py"
    plugin.write_text(SEGFAULT_PLUGIN)
    recipe = write_slow_recipe(tmp_path, cifar10_dir, epochs=2, steps=3)
    text = recipe.read_text().replace('name = "r"', f'name = "r"\nplugins = ["{plugin}"]', 1)
    recipe.write_text(text + '[[callbacks]]\nplugin = "crash_after"\n')
    runs = tmp_path / "runs"
    crashed = cifarkit("run", str(recipe), "--output", str(runs))
    assert crashed.returncode == -signal.SIGSEGV, crashed.stderr[-2000:]
    (run_dir,) = runs.iterdir()
    log = (run_dir / "run.log").read_text()
    assert "Fatal Python error: Segmentation fault" in log and "on_epoch_begin" in log
    s = summary(run_dir)
    assert s["status"] == "running" and s["host"] == socket.gethostname()
    assert read_summary(run_dir)["status"] == "crashed"  # no live process holds it
    # it crashed as epoch 2 began: epoch 1 is complete and checkpointed
    assert len(metrics(run_dir)) == 1
    edited = (run_dir / "recipe.toml").read_text().replace('plugin = "crash_after"\nepoch = 1',
                                                            'plugin = "crash_after"\nepoch = 99')
    (run_dir / "recipe.toml").write_text(edited)
    result = cli("run", "--resume", str(run_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    assert summary(run_dir)["status"] == "completed" and len(metrics(run_dir)) == 2


def interrupted_or_completed(run_dir):
    """The run ends in a state summary.json states truthfully and --resume continues."""
    s = summary(run_dir)
    assert s["status"] in ("interrupted", "completed"), s["status"]
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".model.")]
    if s["status"] == "interrupted":
        resumed = cli("run", "--resume", str(run_dir))
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert summary(run_dir)["status"] == "completed"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_two_signals_50_ms_apart_leave_a_truthful_resumable_run(tmp_path, cifar10_dir, sig):
    """The second Ctrl-C (or SIGTERM) exits at once, and what is left resumes."""
    with slow_run(tmp_path, cifar10_dir, 1) as (proc, run_dir):
        proc.send_signal(sig)
        time.sleep(0.05)
        proc.send_signal(sig)
        proc.wait(timeout=60)
    assert proc.returncode == 130
    assert summary(run_dir)["status"] == "interrupted"
    interrupted_or_completed(run_dir)


@pytest.mark.slow
def test_a_signal_after_the_last_epoch_is_not_ignored(tmp_path, cifar10_dir):
    # the signal arrives at the end of the last step: training is over, evaluation follows
    stopped, run_dir = stopped_run(tmp_path, write_slow_recipe(tmp_path, cifar10_dir, epochs=2,
                                                               steps=3), 0, 0, "int", run=cli)
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    s = summary(run_dir)
    assert s["status"] == "interrupted" and len(metrics(run_dir)) == 2
    assert "test_accuracy" not in s  # evaluation was skipped, not half-done
    interrupted_or_completed(run_dir)


@pytest.mark.slow
def test_resume_refuses_recipe_edits_it_cannot_honour(tmp_path, cifar10_dir):
    run_dir = interrupted_run(tmp_path, cifar10_dir, rows=2, epochs=3)
    original = (run_dir / "recipe.toml").read_text()
    done = len(metrics(run_dir))
    edits = {
        "filters = [\n    4,\n    8,\n]": ("filters = [\n    4,\n    16,\n]", "model.filters"),
        "learning_rate = 0.001": ("learning_rate = 0.01", "train.learning_rate"),
        "epochs = 3": ("epochs = 1", "train.epochs"),
    }
    for old, (new, key) in edits.items():
        assert old in original, old
        (run_dir / "recipe.toml").write_text(original.replace(old, new))
        result = cli("run", "--resume", str(run_dir))
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
        assert result.stderr.startswith(f"cifarkit: error: {run_dir / 'recipe.toml'}: {key}: ")
    # allowed: more epochs and other callback settings
    (run_dir / "recipe.toml").write_text(original.replace("epochs = 3", "epochs = 4")
                                         .replace("patience = 10", "patience = 5"))
    result = cli("run", "--resume", str(run_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(metrics(run_dir)) == 4 >= done and summary(run_dir)["epochs_planned"] == 4


@pytest.mark.slow
def test_a_run_killed_before_its_first_summary_resumes(tmp_path, cifar10_dir):
    run_dir = tmp_path / "runs" / "r-20261126-000000"
    run_dir.mkdir(parents=True)
    recipe = write_slow_recipe(tmp_path, cifar10_dir, epochs=1, steps=5)
    done = cli("run", str(recipe), "--output", str(tmp_path / "first"))
    assert done.returncode == 0, done.stderr[-2000:]
    (first,) = (tmp_path / "first").iterdir()
    for name in (".signature", "recipe.toml"):  # as a kill leaves it (the signature first)
        (run_dir / name).write_text((first / name).read_text())
    (run_dir / ".recipe.toml.abc.tmp").write_text("half")
    result = cli("run", "--resume", str(run_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    assert summary(run_dir)["status"] == "completed"
    assert not (run_dir / ".recipe.toml.abc.tmp").exists()
    # a completed run resumes only to train on: to more epochs than it ran
    again = cli("run", "--resume", str(run_dir))
    assert again.returncode == 2 and "already completed (1 epochs)" in again.stderr
    assert "--set train.epochs=N, N more than 1" in again.stderr


@pytest.mark.slow
def test_a_full_disk_fails_in_one_line_and_resumes_once_space_is_freed(tmp_path, cifar10_dir,
                                                                      small_fs):
    out = small_fs.make("3m")  # the run's small files fit; a 2.2 M-parameter checkpoint does not
    sets = [f"data.path={cifar10_dir}", "train.epochs=2", "data.batch_size=32"]
    result = cli("run", str(DEFAULT_RECIPE), *[a for s in sets for a in ("--set", s)],
                      "--output", str(out))
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"{out}/" in result.stderr and "/checkpoint: no space left on the device (" in result.stderr
    assert " MB needed, " in result.stderr
    (run_dir,) = out.iterdir()
    s = summary(run_dir)
    assert s["status"] == "failed" and s["epochs_run"] == 0
    assert not (run_dir / ".checkpoint-pending").exists()
    small_fs.remount(out, "size=200m")
    resumed = cli("run", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert summary(run_dir)["status"] == "completed" and len(metrics(run_dir)) == 2
    # evaluate onto a full disk, then into a read-only place: one line each
    filler = out / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "count=400"], capture_output=True)
    full = cli("evaluate", str(run_dir), "--output", str(out / "eval"))
    assert full.returncode == 2 and "no space left on the device" in full.stderr, full.stderr[-2000:]
    assert full.stderr.count("\n") == 1
    filler.unlink()
    (run_dir / "evaluation").mkdir()  # an existing folder on a file system gone read-only
    small_fs.remount(out, "ro")
    read_only = cli("evaluate", str(run_dir))
    assert read_only.returncode == 2 and "read-only file system" in read_only.stderr, \
        read_only.stderr[-2000:]
    again = cli("run", "--resume", str(run_dir))
    assert again.returncode == 2 and again.stderr.count("\n") == 1, again.stderr[-2000:]


@pytest.mark.slow
def test_a_disk_full_before_the_start_leaves_no_run_directory(tmp_path, cifar10_dir, small_fs):
    out = small_fs.make("64k")
    subprocess.run(["dd", "if=/dev/zero", f"of={out / 'filler'}", "bs=1k", "count=64"],
                   capture_output=True)
    result = cli("run", str(DEFAULT_RECIPE), "--set", f"data.path={cifar10_dir}",
                 "--set", "train.epochs=1", "--output", str(out / "runs"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert "no space left on the device" in result.stderr
    assert list((out / "runs").iterdir()) == [] if (out / "runs").exists() else True
