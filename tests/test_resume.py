"""Runs people can leave alone: kill -9 and --resume, Ctrl-C, callback state,
determinism, a crash recorded in the run directory."""

import errno

import numpy as np
import pytest

from cifarkit import OutputError

from cifarkit.runs import checkpoint
from conftest import (assert_same_epochs, cli, interrupted_run, killed_run, metrics,
                      stopped_run, summary, write_slow_recipe)


@pytest.mark.slow
def test_kill_9_during_epoch_3_then_resume(tmp_path, cifar10_dir):
    run_dir = killed_run(tmp_path, cifar10_dir, rows=2)
    assert len(metrics(run_dir)) == 2 and summary(run_dir)["status"] == "running"
    result = cli("run", "--resume", str(run_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming: after epoch 2 of 4" in result.stdout
    rows = metrics(run_dir)
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    # reduce_lr_on_plateau's state survived: it halves the rate after every epoch but the first
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4])
    s = summary(run_dir)
    assert s["status"] == "completed" and s["resumed"] is True and s["resumed_from_epoch"] == 2
    assert s["epochs_run"] == 4 and (run_dir / "model.keras").is_file()
    # the final checkpoint is kept (what training on needs), nothing older
    assert (run_dir / "checkpoint" / "state.json").is_file()
    assert not (run_dir / ".checkpoint-previous").exists()
    again = cli("run", "--resume", str(run_dir))
    assert again.returncode == 2 and "already completed" in again.stderr


@pytest.mark.slow
def test_a_resumed_run_trains_on_what_the_uninterrupted_run_did(tmp_path, cifar10_dir):
    """Epoch by epoch, the same training and validation figures.

    --deterministic makes every op reproducible, and the input stream, the
    augmentation's and dropout's random states are addressed by step, so the
    resumed epochs must match to the 6 significant digits metrics.csv keeps.
    (Before, a resumed epoch replayed the first epoch's batches, and reported
    training accuracy far above what the model could reach.)
    """
    recipe = write_slow_recipe(tmp_path, cifar10_dir, epochs=3, steps=6)
    whole = cli("run", str(recipe), "--deterministic", "--output", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-2000:]
    (whole_dir,) = (tmp_path / "whole").iterdir()
    # Ctrl-C in the middle of epoch 2: exit 130, the first epoch checkpointed, the model
    # saved, and the command that continues it printed and kept
    stopped, run_dir = stopped_run(tmp_path, recipe, 2, 3, "int", "--deterministic",
                                   runs=tmp_path / "parts", run=cli)
    assert stopped.returncode == 130 and len(metrics(run_dir)) == 1, stopped.stderr[-2000:]
    assert f"cifarkit run --resume {run_dir}" in stopped.stdout
    s = summary(run_dir)
    assert s["status"] == "interrupted" and s["resume_command"] == f"cifarkit run --resume {run_dir}"
    assert (run_dir / "model.keras").is_file()
    # two deterministic runs: the same epoch 1, digit for digit
    assert s["deterministic"] is True and "deterministic = true" in (run_dir / "recipe.toml").read_text()
    assert (run_dir / "metrics.csv").read_text().splitlines()[:2] == \
        (whole_dir / "metrics.csv").read_text().splitlines()[:2]
    resumed = cli("run", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert summary(run_dir)["status"] == "completed"
    assert_same_epochs(whole_dir, run_dir, 3, rel=1e-5)


def test_checkpoint_restores_callback_state(tmp_path):
    keras = pytest.importorskip("keras")
    from cifarkit_plugins._callbacks import EarlyStopping, ReduceLROnPlateau  # noqa: F401
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    model.optimizer.build(model.trainable_variables)
    es = EarlyStopping(restore_best_weights=True)
    es.wait, es.best, es.best_epoch, es.best_weights = 2, 0.5, 3, [np.ones((3, 2)), np.zeros(2)]
    lr = ReduceLROnPlateau()
    lr.wait, lr.best, lr.cooldown_counter = 1, 0.25, 4

    class Custom(keras.callbacks.Callback):
        state = {"seen": 7}

        def get_state(self):
            return self.state

        def set_state(self, state):
            self.state = state

    checkpoint.save(tmp_path, model, [{"epoch": 1}], [es, lr, Custom()], stop_training=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    folder, state, _ = usable(tmp_path)
    fresh = [EarlyStopping(restore_best_weights=True),
             ReduceLROnPlateau(), Custom()]
    fresh[2].state = None
    checkpoint.restore_callbacks(folder, state, fresh)
    assert (fresh[0].wait, fresh[0].best, fresh[0].best_epoch) == (2, 0.5, 3)
    np.testing.assert_array_equal(fresh[0].best_weights[0], np.ones((3, 2)))
    assert (fresh[1].wait, fresh[1].best, fresh[1].cooldown_counter) == (1, 0.25, 4)
    assert fresh[2].state == {"seen": 7}


def test_a_checkpoint_from_before_the_state_wrappers_still_restores(tmp_path):
    """Checkpoints written before early stopping kept its own state (0.1) resume."""
    pytest.importorskip("keras")
    import json

    from cifarkit_plugins._callbacks import EarlyStopping, ReduceLROnPlateau

    folder = tmp_path / "checkpoint"
    folder.mkdir()
    np.savez(folder / "early_stopping_0.npz", np.ones((3, 2)), np.zeros(2))
    state = {"callbacks": [
        {"wait": 2, "best": 0.5, "best_epoch": 3, "stopped_epoch": 0,
         "best_weights": "early_stopping_0.npz"},
        {"wait": 1, "best": 0.25, "cooldown_counter": 4}]}
    (folder / "state.json").write_text(json.dumps(state))
    fresh = [EarlyStopping(restore_best_weights=True), ReduceLROnPlateau()]
    checkpoint.restore_callbacks(folder, state, fresh)
    assert (fresh[0].wait, fresh[0].best, fresh[0].best_epoch) == (2, 0.5, 3)
    np.testing.assert_array_equal(fresh[0].best_weights[0], np.ones((3, 2)))
    assert (fresh[1].wait, fresh[1].best, fresh[1].cooldown_counter) == (1, 0.25, 4)


@pytest.mark.slow
def test_a_crash_during_training_is_recorded(tmp_path, cifar10_dir):
    plugin = tmp_path / "crash.py"
    plugin.write_text(
        "import cifarkit\n"
        "def crash_after_one_epoch():\n"
        "    'Raise at the end of the first epoch.'\n"
        "    import keras\n"
        "    class Crash(keras.callbacks.Callback):\n"
        "        def on_epoch_end(self, epoch, logs=None):\n"
        "            raise RuntimeError('disk on fire')\n"
        "    return Crash()\n"
        "@cifarkit.hookimpl\n"
        "def register_callbacks(register):\n"
        "    register(crash_after_one_epoch)\n")
    recipe = write_slow_recipe(tmp_path, cifar10_dir, epochs=2, steps=5)
    recipe.write_text(recipe.read_text() + '\n[[callbacks]]\nplugin = "crash_after_one_epoch"\n')
    result = cli("run", str(recipe), "--plugin", str(plugin), "--output", str(tmp_path / "runs"))
    assert result.returncode == 1 and "Traceback" in result.stderr  # a bug, not a user error
    (run_dir,) = (tmp_path / "runs").iterdir()
    s = summary(run_dir)
    assert s["status"] == "failed" and "disk on fire" in s["error"]
    log = (run_dir / "run.log").read_text()
    assert "Traceback" in log and "RuntimeError: disk on fire" in log


def usable(run_dir):
    """The checkpoint a resume would use, read the way a resume reads it."""
    from cifarkit.runs.snapshot import open_run

    snapshot = open_run(run_dir, checkpoint=True, resumable=True)
    if snapshot.checkpoint_problem is not None:  # (raised once a resume trusts the folder)
        raise OutputError(snapshot.checkpoint_problem)
    return snapshot.restore


def tiny_model_and_early_stopping():
    keras = pytest.importorskip("keras")
    from cifarkit_plugins._callbacks import EarlyStopping, ReduceLROnPlateau  # noqa: F401
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    model.optimizer.build(model.trainable_variables)
    es = EarlyStopping(restore_best_weights=True)
    es.wait, es.best, es.best_epoch, es.stopped_epoch = 0, 1.0, 0, 0
    es.best_weights = [np.ones((3, 2)), np.zeros(2)]
    return model, es


def truncate(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


@pytest.mark.parametrize("damaged", ["weights.weights.h5", "state.json", "callback_0_best_weights.npz"])
def test_a_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, damaged):
    model, es = tiny_model_and_early_stopping()
    checkpoint.save(tmp_path, model, [{"epoch": 1}], [es], stop_training=False)
    checkpoint.save(tmp_path, model, [{"epoch": 1}, {"epoch": 2}], [es], stop_training=False)
    assert {p.name for p in tmp_path.iterdir()} == {"checkpoint", ".checkpoint-previous"}
    truncate(tmp_path / "checkpoint" / damaged)
    folder, state, _ = usable(tmp_path)
    assert folder.name == ".checkpoint-previous" and state["rows"] == [{"epoch": 1}]
    truncate(tmp_path / ".checkpoint-previous" / damaged)
    with pytest.raises(OutputError) as info:
        usable(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{tmp_path}: no readable checkpoint (checkpoint: ")
    assert "\n" not in message and message.endswith("start the run again")


def test_a_checkpoint_that_does_not_fit_leaves_nothing_half_written(tmp_path, monkeypatch):
    model, es = tiny_model_and_early_stopping()
    checkpoint.save(tmp_path, model, [{"epoch": 1}], [es], stop_training=False)

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model, "save_weights", full_disk)
    with pytest.raises(OutputError, match=r"checkpoint: no space left on the device "
                                          r"\([\d.]+ (KB|bytes) needed, .* free\)"):
        checkpoint.save(tmp_path, model, [{"epoch": 1}, {"epoch": 2}], [es], stop_training=False)
    assert {p.name for p in tmp_path.iterdir()} == {"checkpoint"}  # the last complete one, intact
    assert usable(tmp_path)[1]["rows"] == [{"epoch": 1}]


@pytest.mark.parametrize("seed", [0, 42])
def test_the_training_stream_is_addressed_by_step(seed):
    keras = pytest.importorskip("keras")
    from cifarkit_plugins._callbacks import EarlyStopping, ReduceLROnPlateau  # noqa: F401
    from cifarkit.backends import Stream, get
    from cifarkit.data import Prepared

    keras.utils.set_random_seed(seed)  # as a run does; 0 once broke the shuffle
    x = (np.arange(10)[:, None, None, None] * np.ones((1, 2, 2, 3))).astype(np.uint8)
    prepared = Prepared(x, np.arange(10), None, None, x[:4], np.arange(4), list("abcdefghij"))

    def labels(first_step, count):
        train, _ = get("tensorflow").datasets(prepared, [], Stream(4, 10, False, seed,
                                                                  first_step=first_step))
        batches = iter(train)
        return [next(batches)[1].numpy().tolist() for _ in range(count)]

    whole = labels(0, 6)
    assert [len(b) for b in whole] == [4, 4, 2, 4, 4, 2]  # passes keep their partial batch
    for p in (whole[:3], whole[3:]):
        assert sorted(sum(p, [])) == list(range(10))  # each pass is a permutation
    assert whole[:3] != whole[3:]  # reshuffled per pass
    assert labels(3, 3) == whole[3:] and labels(4, 2) == whole[4:]  # a resume continues it


def test_a_run_written_before_a_key_existed_resumes_with_its_default(registry, tmp_path):
    """The checkpoint's recipe is read with today's schema: a key added since (here
    train.tta and data.shuffle, as if they were new) has its default, and is no edit."""
    from cifarkit.errors import RecipeError
    from cifarkit.core.recipe import load_recipe

    from conftest import DEFAULT_RECIPE

    recipe = load_recipe(DEFAULT_RECIPE, ["data.path=/data/cifar"], registry)
    old = recipe.resolved()  # as a run before train.backend existed kept it
    recipe = recipe.with_backend("tensorflow")  # as the runner reads it now
    del old["train"]["tta"], old["data"]["shuffle"]
    checkpoint.check_edits(recipe, registry, {"rows": [{}], "recipe": old}, tmp_path)
    moved = load_recipe(DEFAULT_RECIPE, ["data.path=/elsewhere", "train.epochs=60",
                                         "train.backend=tensorflow"], registry)
    checkpoint.check_edits(moved, registry, {"rows": [{}], "recipe": old}, tmp_path)  # allowed
    edited = load_recipe(DEFAULT_RECIPE, ["data.path=/data/cifar", "train.tta=flip",
                                          "train.backend=tensorflow"], registry)
    with pytest.raises(RecipeError, match=r"train\.tta: --set changes it "  # (an override here)
                                          r'\("none" -> "flip"\).*data\.path'):
        checkpoint.check_edits(edited, registry, {"rows": [{}], "recipe": old}, tmp_path)


@pytest.mark.slow
def test_a_resume_on_other_data_is_refused_and_on_moved_data_continues(tmp_path, cifar10_dir):
    import shutil

    from cifarkit.testing import write_cifar10

    run_dir = interrupted_run(tmp_path, cifar10_dir, rows=1, epochs=2)
    recipe = run_dir / "recipe.toml"
    text = recipe.read_text()
    other = write_cifar10(tmp_path / "other", n_train=140, n_test=40)  # same 10 classes
    recipe.write_text(text.replace(str(cifar10_dir), str(other)))
    # an edited data path makes the directory foreign: the user vouches for the edit
    foreign = cli("run", "--resume", str(run_dir))
    assert foreign.returncode == 2 and "--trust-run" in foreign.stderr
    refused = cli("run", "--resume", str(run_dir), "--trust-run")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "the data now gives train_examples 126, but the run started with 90" in refused.stderr
    moved = tmp_path / "moved" / "cifar-10-batches-py"
    shutil.copytree(cifar10_dir, moved)
    recipe.write_text(text.replace(str(cifar10_dir), str(moved)))
    resumed = cli("run", "--resume", str(run_dir), "--trust-run")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert summary(run_dir)["status"] == "completed"


@pytest.mark.slow
def test_a_resume_can_be_given_more_epochs_and_refuses_other_keys(tmp_path, cifar10_dir):
    """`run --resume RUN --set train.epochs=N` continues to N (recipe.toml then says N);
    --set on a key a resume cannot honour is one line naming it, and changes nothing."""
    run_dir = interrupted_run(tmp_path, cifar10_dir, rows=1, epochs=2)
    before = (run_dir / "recipe.toml").read_text()
    refused = cli("run", "--resume", str(run_dir), "--set", "data.batch_size=32")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "data.batch_size: --set changes it (16 -> 32)" in refused.stderr
    assert (run_dir / "recipe.toml").read_text() == before
    fewer = cli("run", "--resume", str(run_dir), "--set", "train.epochs=0")
    assert fewer.returncode == 2 and "train.epochs" in fewer.stderr
    more = cli("run", "--resume", str(run_dir), "--set", "train.epochs=3")
    assert more.returncode == 0, more.stderr[-2000:]
    s = summary(run_dir)
    assert s["status"] == "completed" and s["epochs_run"] == 3
    assert [int(r["epoch"]) for r in metrics(run_dir)] == [1, 2, 3]
    assert "epochs = 3" in (run_dir / "recipe.toml").read_text()
    same = cli("run", "--resume", str(run_dir), "--set", "train.epochs=3")
    assert same.returncode == 2 and "already completed (3 epochs)" in same.stderr


@pytest.mark.slow  # trains
def test_a_completed_run_trains_on_and_an_early_stopped_one_starts_its_patience_again(
        tmp_path, cifar10_dir):
    """`run --resume RUN --set train.epochs=N` on a completed run continues from its final
    weights, optimizer and callback state; early stopping's patience counts afresh."""
    from conftest import cli

    recipe = write_slow_recipe(tmp_path, cifar10_dir, epochs=4, steps=3)
    never_better = ["--set", "callbacks.early_stopping.patience=0",
                    "--set", "callbacks.early_stopping.min_delta=100.0"]
    first = cli("run", str(recipe), *never_better, "--output", str(tmp_path / "runs"))
    assert first.returncode == 0, first.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    s = summary(run_dir)
    assert s["status"] == "completed" and s["stopped_early"] and s["epochs_run"] == 2
    rates = [float(r["learning_rate"]) for r in metrics(run_dir)]
    more = cli("run", "--resume", str(run_dir), "--set", "train.epochs=6")
    assert more.returncode == 0, more.stderr[-2000:]
    header = " ".join(more.stdout.split())
    assert "after epoch 2 of 6; a completed run trained on: early stopping's patience" in header
    s = summary(run_dir)
    # one more epoch: patience 0 and no improvement stop it again, after epoch 3, not at once
    assert s["status"] == "completed" and s["epochs_run"] == 3 and s["resumed"] is True
    rows = metrics(run_dir)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    # reduce_lr_on_plateau's state came from the checkpoint: it halves on from where it was
    assert float(rows[2]["learning_rate"]) == pytest.approx(rates[1] / 2)
