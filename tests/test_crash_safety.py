"""Crash-safe runs: one process per run directory, native crashes on record,
debris from a kill cleaned by the next resume."""

import signal
import socket

import pytest

from cifarkit import OutputError
from cifarkit.artifacts import read_summary
from cifarkit.lock import RunLock, is_locked
from conftest import cifarkit, metrics, running, summary, wait_for_rows, write_slow_recipe

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
    runs = tmp_path / "runs"
    with running("run", str(write_slow_recipe(tmp_path, cifar10_dir, epochs=3, steps=300)),
                 "--output", str(runs)) as proc:
        run_dir = wait_for_rows(runs, 1, proc)
        s = summary(run_dir)
        assert s["pid"] == proc.pid and s["host"] == socket.gethostname()
        second = cifarkit("run", "--resume", str(run_dir))
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
    result = cifarkit("run", "--resume", str(run_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    left = {p.name for p in run_dir.iterdir() if p.name.startswith(".")}
    assert left <= {".lock"}, left


@pytest.mark.slow
def test_a_native_crash_lands_in_run_log_and_resumes(tmp_path, cifar10_dir):
    plugin = tmp_path / "crash.py"
    plugin.write_text(SEGFAULT_PLUGIN)
    recipe = write_slow_recipe(tmp_path, cifar10_dir, epochs=2, steps=20)
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
    result = cifarkit("run", "--resume", str(run_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    assert summary(run_dir)["status"] == "completed" and len(metrics(run_dir)) == 2
