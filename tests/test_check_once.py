"""Check once, use what was checked (issue 36): a command reads a run folder once into a
verified snapshot, the signature covers every file the run wrote, and nothing in a run
folder is written in place or through a link. Each hostile case ends in exit 0 or one
line (exit 2), with no traceback, nothing outside the folder changed, within 30 s."""

import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import cli
from test_run_folders import assert_clean_outcome, deadline

#: Every file `run --resume` writes into a run folder (checkpoint files by their path).
RESUME_WRITES = ["summary.json", "metrics.csv", "timing.csv", "recipe.toml", ".signature",
                 "run.log", ".lock", "model.keras", "accuracy.png", "loss.png",
                 "learning_rate.png", "confusion_matrix.png",
                 "confusion_matrix_normalized.png", "checkpoint/state.json",
                 "checkpoint/weights.weights.h5"]
#: Every file `evaluate` writes (into RUN_DIR/evaluation).
EVALUATE_WRITES = ["evaluation/evaluation.json", "evaluation/confusion_matrix.png",
                   "evaluation/confusion_matrix_normalized.png"]


def _outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside" / "notes.txt"
    outside.parent.mkdir(exist_ok=True)
    outside.write_text("my notes\n")
    return outside


def _hard_link(run_dir: Path, name: str, outside: Path) -> None:
    path = run_dir / name
    path.parent.mkdir(exist_ok=True)
    path.unlink(missing_ok=True)
    os.link(outside, path)


@pytest.mark.parametrize("name", RESUME_WRITES + EVALUATE_WRITES)
def test_a_hard_link_out_of_the_folder_is_refused_for_every_file_a_command_writes(
        run_copy, tmp_path, name):
    outside = _outside(tmp_path)
    _hard_link(run_copy, name, outside)
    if name.startswith("evaluation/"):
        args = ["evaluate", str(run_copy)]
    else:
        args = ["run", "--resume", str(run_copy), "--set", "train.epochs=2"]
    with deadline(30):
        result = cli(*args)
    assert_clean_outcome(result, f"{args[0]} with {name} hard-linked")
    assert result.returncode == 2 and "hard link" in result.stderr, result.stderr
    assert outside.read_text() == "my notes\n" and outside.stat().st_nlink == 2


@pytest.mark.parametrize("folder", ["checkpoint", "evaluation"])
def test_a_folder_of_the_run_that_is_a_link_elsewhere_is_neither_read_nor_written(
        run_copy, tmp_path, folder):
    elsewhere = tmp_path / "elsewhere"
    if (run_copy / folder).is_dir():
        shutil.move(run_copy / folder, elsewhere)
    else:
        elsewhere.mkdir()
    (run_copy / folder).symlink_to(elsewhere)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in elsewhere.iterdir())
    args = (["run", "--resume", str(run_copy), "--set", "train.epochs=2"]
            if folder == "checkpoint" else ["evaluate", str(run_copy)])
    with deadline(30):
        result = cli(*args)
    assert_clean_outcome(result, f"{folder} as a link")
    assert result.returncode == 2 and "symbolic link" in result.stderr, result.stderr
    assert sorted((p.name, p.stat().st_mtime_ns) for p in elsewhere.iterdir()) == before


def _state(run_dir: Path) -> dict:
    return json.loads((run_dir / "checkpoint" / "state.json").read_text())


@pytest.mark.parametrize("change", ["rows", "random_state", "callback_state", "stop_training",
                                    "external_storage"])
def test_every_piece_of_the_checkpoint_is_checked_before_it_is_used(run_copy, tmp_path,
                                                                    change):
    """A changed checkpoint makes the folder foreign (one line naming the file); vouched
    for with --trust-run, a piece of the wrong shape is one line too, never a traceback
    or a hang."""
    state = _state(run_copy)
    weights = run_copy / "checkpoint" / "weights.weights.h5"
    if change == "rows":
        state["rows"] = [1]
    elif change == "random_state":
        state["model_random_state"] = [[1, 2, 3] for _ in state["model_random_state"]]
    elif change == "callback_state":
        state["callbacks"] = [{"custom": {}} if c is not None else None
                              for c in state["callbacks"]]
    elif change == "stop_training":
        state["stop_training"] = "yes"
    if change == "external_storage":
        import h5py

        os.mkfifo(tmp_path / "fifo")
        with h5py.File(weights, "a") as f:
            f.create_dataset("planted", (3,), "float32", external=[(str(tmp_path / "fifo"),
                                                                    0, 12)])
        touched = "checkpoint/weights.weights.h5"
    else:
        (run_copy / "checkpoint" / "state.json").write_text(json.dumps(state))
        touched = "checkpoint/state.json"
    with deadline(30):
        foreign = cli("run", "--resume", str(run_copy), "--set", "train.epochs=2")
    assert_clean_outcome(foreign, change)
    assert foreign.returncode == 2 and touched in foreign.stderr, foreign.stderr
    assert "differs from what your cifarkit wrote" in foreign.stderr
    with deadline(30):
        vouched = cli("run", "--resume", str(run_copy), "--set", "train.epochs=2",
                      "--trust-run")
    assert_clean_outcome(vouched, change)
    if change in ("callback_state", "random_state"):
        assert vouched.returncode == 2 and "state.json" in vouched.stderr, vouched.stderr
    else:
        assert vouched.returncode == 2 and "no readable checkpoint" in vouched.stderr


def test_a_changed_file_makes_the_folder_foreign_and_trust_run_signs_it_anew(run_copy):
    from cifarkit.runs.snapshot import open_run

    summary = run_copy / "summary.json"
    summary.write_text(summary.read_text().replace('"status": "completed"',
                                                   '"status": "interrupted"'))
    refused = cli("run", "--resume", str(run_copy), "--set", "train.epochs=2")
    assert refused.returncode == 2 and "summary.json: differs" in refused.stderr, \
        refused.stderr
    done = cli("run", "--resume", str(run_copy), "--set", "train.epochs=2", "--trust-run")
    assert done.returncode == 0, done.stderr[-3000:]
    with open_run(run_copy, model=True, checkpoint=True) as snapshot:
        assert snapshot.own, snapshot.why_foreign  # every file it wrote is in its manifest
    resumed = json.loads(summary.read_text())
    assert resumed["epochs_run"] == 2
    assert 0 < resumed["wall_time_this_invocation_s"] < resumed["wall_time_s"]


def _swapping(path: Path, versions: list[bytes], stop: threading.Event) -> threading.Thread:
    """A thread that puts each of ``versions`` at ``path`` in turn (os.replace), every
    millisecond, until ``stop``."""
    def swap():
        i = 0
        while not stop.is_set():
            tmp = path.with_name(f".swap-{i % 2}")
            tmp.write_bytes(versions[i % len(versions)])
            os.replace(tmp, path)
            i += 1
            time.sleep(0.001)

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    return thread


def test_a_recipe_swapped_while_evaluate_runs_never_runs_the_swapped_in_plugins(
        run_copy, tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    recipe = run_copy / "recipe.toml"
    good = recipe.read_bytes()
    bad = f"plugins = [{str(evil)!r}]\n".encode() + good
    stop = threading.Event()
    thread = _swapping(recipe, [good, bad], stop)
    try:
        for _ in range(6):
            with deadline(30):
                result = cli("evaluate", str(run_copy), "--json", "--output",
                             str(tmp_path / "eval"))
            assert_clean_outcome(result, "evaluate while recipe.toml is swapped")
    finally:
        stop.set()
        thread.join()
    assert not marker.exists()


def test_a_model_swapped_while_predict_runs_is_used_only_as_checked(run_copy, tmp_path):
    """model.keras swapped between the run's own and one the check refuses (a member no
    Keras model has): each prediction is the run's model's, or one line refusing."""
    import zipfile

    image = tmp_path / "x.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(image)
    expected = cli("predict", str(run_copy), str(image), "--json")
    assert expected.returncode == 0, expected.stderr
    model = run_copy / "model.keras"
    good = model.read_bytes()
    refused = tmp_path / "refused.keras"
    shutil.copy(model, refused)
    with zipfile.ZipFile(refused, "a") as archive:
        archive.writestr("extra.py", "print('no part of a model')")
    stop = threading.Event()
    thread = _swapping(model, [good, refused.read_bytes()], stop)
    outcomes = set()
    try:
        for _ in range(6):
            with deadline(30):
                result = cli("predict", str(run_copy), str(image), "--json")
            assert_clean_outcome(result, "predict while model.keras is swapped")
            if result.returncode == 0:
                assert result.stdout == expected.stdout
            else:
                assert "refused" in result.stderr or "differs" in result.stderr, result.stderr
            outcomes.add(result.returncode)
    finally:
        stop.set()
        thread.join()
    assert outcomes <= {0, 2}


def test_a_sweep_names_each_trials_run_directory_before_its_process_starts(
        tmp_path, monkeypatch):
    """The trial's run directory is in sweep.json when its process starts, and the process
    is told to use it (--run-dir); a resumed sweep continues what that trial left."""
    from cifarkit.sweeps import folder as sweep, grid

    started = []

    class Done:
        def wait(self):
            return 0

    def fake_start(args):
        started.append((args, json.loads((folder / "sweep.json").read_text())))
        return Done()

    monkeypatch.setattr(grid, "start_trial", fake_start)
    folder = tmp_path / "s-sweep"
    folder.mkdir()
    state = {"mode": "grid", "recipe": "default", "recipe_name": "s", "set": [],
             "trials": [{"trial": 1, "name": "s-seed=1", "values": {"seed": "1"},
                         "overrides": ["seed=1"], "run_dir": None}]}
    sweep.write_state(folder, state)
    grid.run_trials(folder, state, "default", [], grid.StopAfterTrial())
    ((args, seen),) = started
    named = seen["trials"][0]["run_dir"]
    assert named and args[args.index("--run-dir") + 1] == str(folder / named)
    # the trial made its folder and was killed: the resume continues that run
    (folder / named).mkdir()
    (folder / named / "recipe.toml").write_text("name = 's'\n")
    grid.run_trials(folder, state, "default", [], grid.StopAfterTrial())
    assert started[1][0][:3] == ["run", "--resume", str(folder / named)]


def test_run_dir_takes_an_empty_folder_and_refuses_one_with_files(tmp_path):
    from cifarkit.errors import OutputError
    from cifarkit.runs.artifacts import create_run_dir

    (tmp_path / "named").mkdir()
    assert create_run_dir(tmp_path, "r", exact="named") == tmp_path / "named"
    (tmp_path / "named" / "x").write_text("")
    with pytest.raises(OutputError, match="not an empty folder"):
        create_run_dir(tmp_path, "r", exact="named")


def test_list_plugins_shows_a_plugins_escape_sequences_as_text(tmp_path):
    plugin = tmp_path / "loud.py"
    plugin.write_text(
        "import cifarkit\n"
        "def loud_model(input_shape, num_classes, width: int = 3):\n"
        "    '''A model \\x1b]0;owned\\x07 whose docs \\x1b[31mshout.\\n\\n"
        "    Args:\\n        width: \\x1b[2J cleared.\\n    '''\n"
        "    raise NotImplementedError\n"
        "@cifarkit.hookimpl\n"
        "def register_models(register):\n"
        "    register(loud_model)\n")
    for args in (["list-plugins", "--plugin", str(plugin)],
                 ["list-plugins", "loud_model", "--plugin", str(plugin)]):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout
        assert "loud_model" in result.stdout and "\\x1b" in result.stdout


def test_a_plugin_factory_that_raises_is_one_line_naming_it(tmp_path, cifar10_dir):
    from conftest import tiny_overrides

    plugin = tmp_path / "picky.py"
    plugin.write_text(
        "import cifarkit, keras\n"
        "def picky(input_shape, num_classes):\n"
        "    'A model whose layer refuses its argument.'\n"
        "    return keras.Sequential([keras.layers.Dense(-3)])\n"
        "@cifarkit.hookimpl\n"
        "def register_models(register):\n"
        "    register(picky)\n")
    sets = [a for o in [*tiny_overrides(cifar10_dir), "model.plugin=picky"]
            for a in ("--set", o)]
    result = cli("run", "default", *sets, "--plugin", str(plugin), "-o", str(tmp_path / "runs"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "picky" in result.stderr and "Dense" in result.stderr or "units" in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("call, fragment", [
    (lambda c: c.train("default", overrides=[1]), "overrides[0]: expected a string"),
    (lambda c: c.train("default", overrides="train.epochs=1"), "got a single str"),
    (lambda c: c.train("default", plugins="x.py"), "plugins: expected a list"),
    (lambda c: c.train(resume=123), "resume: expected a path"),
    (lambda c: c.load_run(None), "run_dir: expected a path"),
    (lambda c: c.evaluate("r", plugins=[3]), "plugins[0]"),
    (lambda c: c.predict("r", "x.png"), "images: expected a list of paths"),
    (lambda c: c.export("r", "tflite"), "format: 'tflite' is not one of"),
    (lambda c: c.list_plugins("models"), "kind: 'models' is not a plugin kind"),
])
def test_the_python_api_checks_its_arguments(call, fragment):
    import cifarkit

    with pytest.raises(cifarkit.CifarkitError) as info:
        call(cifarkit)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_resume_of_a_file_says_it_is_a_file(tmp_path):
    import cifarkit

    (tmp_path / "f").write_text("")
    with pytest.raises(cifarkit.CifarkitError, match="a file, not a folder"):
        cifarkit.train(resume=tmp_path / "f")


@pytest.mark.parametrize("plant", ["symlink", "hard_link", "folder_link"])
def test_a_callbacks_file_that_leads_out_of_the_run_is_refused_before_training(tmp_path,
                                                                                plant):
    """What csv_logger, tensorboard and a plugin's run.artifact() write goes through
    cifarkit.run_file, which refuses a path that already leads out of the run folder."""
    import cifarkit

    outside = _outside(tmp_path)
    run_dir = tmp_path / "run"
    (run_dir / "logs").mkdir(parents=True)
    if plant == "symlink":
        (run_dir / "logs" / "training_log.csv").symlink_to(outside)
    elif plant == "hard_link":
        os.link(outside, run_dir / "logs" / "training_log.csv")
    else:
        shutil.rmtree(run_dir / "logs")
        (run_dir / "logs").symlink_to(outside.parent)
    with pytest.raises(cifarkit.CifarkitError, match="link"):
        cifarkit.run_file(run_dir, "logs/training_log.csv", "csv_logger: filename")
    assert outside.read_text() == "my notes\n"
