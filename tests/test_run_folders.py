"""Run and sweep folders are untrusted input (issue 28): every command reads them through
one module, writes nothing through a link, runs nothing a foreign folder names, and
ends with exit 0 or one line for anything a folder holds."""

import contextlib
import json
import os
import signal
import stat
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifarkit.errors import CifarkitError, OutputError, RecipeError, masked_url
from conftest import cifarkit, cli

# -- the generated hostile corpus ------------------------------------------------------

FILES = ["summary.json", "metrics.csv", "recipe.toml", ".signature", ".lock", "model.keras",
         "timing.csv", "run.log"]
KINDS = ["symlink_out", "fifo", "dev_zero", "oversized", "deep", "not_utf8", "wrong_types"]
WRONG = {"summary.json": json.dumps({"status": 5, "epochs_run": "x", "class_names": 7,
                                     "started_at": [1], "test_accuracy": "high",
                                     "backend": {"a": 1}, "recipe": ["x"]}),
         "metrics.csv": "epoch,accuracy\nx,[]\n" + "1," + "9" * 300_000 + "\n",
         "recipe.toml": 'name = 5\nplugins = "x"\n[data]\npath = 7\n'}


def plant(run_dir: Path, name: str, kind: str, outside: Path) -> None:
    """Replace ``run_dir/name`` with the hostile ``kind`` of it."""
    path = run_dir / name
    if path.exists() or path.is_symlink():
        path.unlink()
    if kind == "symlink_out":
        path.symlink_to(outside)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "oversized":
        with open(path, "wb") as f:
            f.truncate(80 << 20)  # sparse: 80 MB of zeros claimed, none on disk
    elif kind == "deep":
        path.write_text("[" * 100_000 + "]" * 100_000)
    elif kind == "not_utf8":
        path.write_bytes(b"\xff\xfe\x00bad" * 100)
    elif kind == "wrong_types":
        path.write_text(WRONG.get(name, "{}"))


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) when the block takes longer than ``seconds``."""
    def expired(signum, frame):
        raise AssertionError(f"took more than {seconds} s (a hang?)")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def assert_clean_outcome(result, what: str) -> None:
    assert result.returncode in (0, 2), (what, result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, (what, result.stderr[-3000:])
    if result.returncode == 2:
        assert result.stderr.count("\n") == 1, (what, result.stderr)


def snapshot(folder: Path) -> dict:
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*")
            if p.is_file() and not p.is_symlink()}


def commands(run_dir: Path, other: Path, tmp_path: Path, name: str) -> list[tuple]:
    """The commands that read a run folder, as (label, arguments). The model-loading
    ones only where the planted file is one they read."""
    image = tmp_path / "x.png"
    if not image.exists():
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    out = [("runs", ["runs", str(run_dir.parent)]),
           ("runs --json", ["runs", str(run_dir.parent), "--json"]),
           ("compare", ["compare", str(run_dir), str(other), "--plot",
                        str(tmp_path / "out" / "c.png")]),
           ("run --resume", ["run", "--resume", str(run_dir)])]
    if name in ("summary.json", "model.keras", "recipe.toml", ".signature"):
        out += [("evaluate", ["evaluate", str(run_dir), "--json", "--output",
                              str(tmp_path / "out" / "eval")]),
                ("predict", ["predict", str(run_dir), str(image), "--json"])]
    if name in ("summary.json", "model.keras"):
        out.append(("export", ["export", str(run_dir), "--format", "saved_model", "--output",
                               str(tmp_path / "out" / "sm")]))
    return out


@pytest.mark.parametrize("name", FILES)
def test_every_command_survives_every_hostile_file(run_copy, trained_run, tmp_path, name):
    """Each file a run folder holds, replaced by a link out of the folder, a FIFO, a link
    to /dev/zero, an oversized file, a deeply nested one, bytes that are not UTF-8, and
    values of the wrong types: each command ends (exit 0 or one line, exit 2), in
    seconds, and writes nothing outside the paths it was given."""
    outside = tmp_path / "outside" / "notes.txt"
    outside.parent.mkdir()
    outside.write_text("my notes\n")
    other = tmp_path / "runs" / "other"
    import shutil

    shutil.copytree(trained_run, other)
    import resource

    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    for kind in KINDS:
        plant(run_copy, name, kind, outside)
        for label, args in commands(run_copy, other, tmp_path, name):
            before = snapshot(tmp_path / "outside")
            started = time.monotonic()
            with deadline(30):
                result = cli(*args)
            assert_clean_outcome(result, f"{label} with {name} as {kind}")
            assert time.monotonic() - started < 30
            assert snapshot(tmp_path / "outside") == before, f"{label} wrote outside ({kind})"
            assert outside.read_text() == "my notes\n"
            grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
            assert grown < 512 * 1024, f"{label} with {name} as {kind}: peak memory +{grown} KiB"


# -- each measured case as its own test ----------------------------------------------


def test_a_lock_linked_to_a_users_file_is_refused_and_the_file_kept(run_copy, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("precious\n")
    summary = json.loads((run_copy / "summary.json").read_text())
    (run_copy / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    (run_copy / ".lock").unlink(missing_ok=True)
    (run_copy / ".lock").symlink_to(notes)
    result = cli("run", "--resume", str(run_copy))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert ".lock" in result.stderr and "symbolic link" in result.stderr
    assert notes.read_text() == "precious\n"


def test_run_log_is_never_appended_through_a_link(tmp_path):
    from cifarkit.cli.reporter import Reporter

    target = tmp_path / "bashrc"
    target.write_text("export PATH\n")
    (tmp_path / "run.log").symlink_to(target)
    with pytest.raises(OutputError, match="run.log: cannot append to the run log"):
        Reporter().attach_log(tmp_path / "run.log")
    assert target.read_text() == "export PATH\n"


@pytest.mark.parametrize("folder, command", [
    ("evaluation", ["evaluate", "{run}", "--json"]),
    ("export", ["export", "{run}", "--format", "saved_model"])])
def test_an_output_folder_linked_elsewhere_is_not_written_through(run_copy, tmp_path, folder,
                                                                  command):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "evaluation.json").write_text("{}")
    (run_copy / folder).symlink_to(victim, target_is_directory=True)
    result = cli(*[c.format(run=run_copy) for c in command])
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "not a folder of its own" in result.stderr
    assert [p.name for p in victim.iterdir()] == ["evaluation.json"]
    assert (victim / "evaluation.json").read_text() == "{}"


def test_compare_plot_never_replaces_a_runs_own_file(run_copy, trained_run):
    before = (run_copy / "summary.json").read_bytes()
    result = cli("compare", str(run_copy), str(trained_run), "--plot",
                 str(run_copy / "summary.json"))
    assert result.returncode == 2 and "does not end in .png" in result.stderr
    assert (run_copy / "summary.json").read_bytes() == before
    (run_copy / "x.png").write_text("not an image")
    again = cli("compare", str(run_copy), str(trained_run), "--plot", str(run_copy / "x.png"))
    assert again.returncode == 2 and "is not a PNG image" in again.stderr
    under_file = cli("compare", str(run_copy), str(trained_run), "--plot",
                     str(run_copy / "summary.json" / "c.png"))
    assert under_file.returncode == 2 and under_file.stderr.count("\n") == 1, under_file.stderr


def test_export_output_must_match_its_format(run_copy, tmp_path):
    result = cli("export", str(run_copy), "--format", "onnx", "--output",
                 str(tmp_path / "model.json"))
    assert result.returncode == 2 and ".onnx" in result.stderr
    assert not (tmp_path / "model.json").exists()
    sm = cli("export", str(run_copy), "--format", "saved_model", "--output",
             str(tmp_path / "m.json"))
    assert sm.returncode == 2 and not (tmp_path / "m.json").exists()


def test_a_foreign_run_is_not_resumed_or_signed_without_trust_run(run_copy, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "someone-else"))
    summary = json.loads((run_copy / "summary.json").read_text())
    (run_copy / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    signature = (run_copy / ".signature").read_text()
    result = cli("run", "--resume", str(run_copy))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "not made by your cifarkit" in result.stderr and "--trust-run" in result.stderr
    assert (run_copy / ".signature").read_text() == signature  # not signed as theirs


def test_a_text_edit_anywhere_in_the_recipe_makes_a_run_foreign(run_copy):
    from cifarkit.runs.snapshot import open_run

    def own():
        with open_run(run_copy) as snapshot:
            return snapshot.own

    assert own()
    recipe = run_copy / "recipe.toml"
    text = recipe.read_text()
    recipe.write_text(text.replace("epochs = 1", "epochs = 3"))  # a number: still own
    assert own()
    recipe.write_text(text + '\n[[callbacks]]\nplugin = "csv_logger"\n')  # text: foreign
    assert not own()
    recipe.write_text(text.replace('compilation_cache = "auto"', 'compilation_cache = "/tmp/x"')
                      if 'compilation_cache = "auto"' in text
                      else text.replace("[train]", '[train]\ncompilation_cache = "/tmp/x"'))
    assert not own()


def test_the_checkpoint_kept_recipe_never_imports_its_plugin_files(tmp_path, registry):
    from cifarkit.core.recipe import load_recipe
    from cifarkit.runs.checkpoint import check_edits
    from conftest import DEFAULT_RECIPE

    evil = tmp_path / "evil.py"
    marker = tmp_path / "ran"
    evil.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    recipe = load_recipe(DEFAULT_RECIPE, [], registry)
    kept = {**recipe.resolved(), "plugins": [str(evil)]}
    with contextlib.suppress(CifarkitError):
        check_edits(recipe, registry, {"rows": [], "recipe": kept}, tmp_path)
    assert not marker.exists()


def test_checkpoint_state_naming_files_outside_it_is_not_read(tmp_path):
    from cifarkit.runs import checkpoint

    folder = tmp_path / "checkpoint"
    folder.mkdir()
    os.mkfifo(tmp_path / "fifo.npz")
    for name in (str(tmp_path / "fifo.npz"), "../fifo.npz", ".hidden.npz"):
        (folder / "state.json").write_text(json.dumps(
            {"rows": [], "callbacks": [{"custom": {"best_weights": {"npz": name}}}]}))
        import h5py

        with h5py.File(folder / "weights.weights.h5", "w") as f:
            f["x"] = np.zeros(2)
        with deadline(10), pytest.raises(ValueError, match="not a file of the checkpoint"):
            checkpoint.verify(folder)


def test_a_foreign_sweep_folder_is_not_resumed_without_trust_run(tmp_path, monkeypatch):
    folder = tmp_path / "s-sweep"
    folder.mkdir()
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('ran')\n")
    state = {"mode": "grid", "recipe": "default", "recipe_name": "s", "set": [],
             "trials": [{"trial": 1, "name": "s-t01", "values": {"x": 1}, "run_dir": None,
                         "overrides": [f'plugins=["{evil}"]']}]}
    (folder / "sweep.json").write_text(json.dumps(state))
    result = cli("sweep", "--resume", str(folder))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "not made by your cifarkit" in result.stderr and "--trust-run" in result.stderr
    assert not (tmp_path / "ran").exists() and not any(folder.glob("s-t01*"))


def test_a_sweep_folder_written_by_this_user_is_its_own(tmp_path):
    from cifarkit.sweeps import folder as sweep

    folder = tmp_path / "s"
    folder.mkdir()
    state = {"mode": "grid", "trials": [], "recipe": "default"}
    sweep.write_state(folder, state)
    sweep.check_trusted(folder, trust_run=False)  # no error
    (folder / "sweep.json").write_text((folder / "sweep.json").read_text().replace(
        '"default"', '"/elsewhere/evil.toml"'))
    with pytest.raises(OutputError, match="not made by your cifarkit"):
        sweep.check_trusted(folder, trust_run=False)
    sweep.check_trusted(folder, trust_run=True)
    assert sweep.trial_dir(folder, {"run_dir": "../../etc"}) is None
    assert sweep.trial_dir(folder, {"run_dir": "s-t01-x"}) == folder / "s-t01-x"


@pytest.mark.parametrize("mode, folder_mode, fragment", [
    (0o666, 0o700, "others can read or write it"),
    (0o600, 0o777, "others can write to it"),
])
def test_a_run_key_others_can_reach_is_refused(tmp_path, monkeypatch, mode, folder_mode,
                                               fragment):
    from cifarkit.runs import trust

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    trust.run_key(create=True)  # makes the key
    trust.key_path().chmod(mode)
    trust.key_path().parent.chmod(folder_mode)
    with pytest.raises(OutputError, match=fragment):
        trust.run_key(create=True)
    trust.key_path().parent.chmod(0o700)


def test_a_key_that_is_a_link_is_refused(tmp_path, monkeypatch):
    from cifarkit.runs import trust

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "cifarkit").mkdir(mode=0o700)
    (tmp_path / "elsewhere").write_bytes(b"k" * 32)
    trust.key_path().symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputError, match="symbolic link"):
        trust.run_key(create=True)


def test_a_compilation_cache_under_a_folder_others_can_write_is_refused(tmp_path):
    from cifarkit.files import cache_folder

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(CifarkitError, match="can be written by other users"):
        cache_folder(str(shared / "mine"), "jax")
    shared.chmod(0o1777)  # sticky, as /tmp: others cannot replace what is yours
    assert cache_folder(str(shared / "mine"), "jax") == shared / "mine"
    assert stat.S_IMODE((shared / "mine").stat().st_mode) == 0o700


@pytest.mark.parametrize("value", ['x" #\nextends = "/etc/evil.toml', "a\x1b]0;pwned\x07",
                                   "a\rb"])
def test_control_characters_in_a_set_value_are_refused(registry, value):
    from cifarkit.core.recipe import load_recipe
    from conftest import DEFAULT_RECIPE

    with pytest.raises(RecipeError, match="control character") as caught:
        load_recipe(DEFAULT_RECIPE, [f"description={value}"], registry)
    assert "\n" not in str(caught.value)


def test_escape_sequences_and_markup_in_run_folders_are_printed_as_text(run_copy, tmp_path):
    runs = run_copy.parent
    named = runs / "evil\x1b]0;title\x07\x1b[2J"
    import shutil

    shutil.copytree(run_copy, named)
    summary = json.loads((run_copy / "summary.json").read_text())
    summary["recipe"] = "[link=https://evil.example]click[/link]"
    (run_copy / "summary.json").write_text(json.dumps(summary))
    result = cli("runs", str(runs))
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "\\x1b]0;title\\x07" in result.stdout
    assert "[link=https://evil.example]click[/link]" in result.stdout


def test_a_non_finite_validation_loss_is_divergence():
    from cifarkit.runs.loop import Diverged, _check_finite

    _check_finite({"loss": 1.0, "val_loss": 2.0}, 1, 4, 4)
    with pytest.raises(Diverged, match="the validation loss is nan after epoch 3"):
        _check_finite({"loss": 1.0, "val_loss": float("nan")}, 3, 4, 4)


def _h5_with(path: Path, how: str, tmp_path: Path) -> None:
    import h5py

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.arange(12, dtype="float32").reshape(3, 4)
    (tmp_path / "secret.bin").write_bytes(b"s" * 48)
    with h5py.File(path, "w") as f:
        group = f.create_group("layers/dense/vars")
        group.attrs["name"] = "dense"
        if how == "external_link":
            group["0"] = h5py.ExternalLink(str(other), "data")
        elif how == "external_storage":
            group.create_dataset("0", (3, 4), "float32",
                                 external=[(str(tmp_path / "secret.bin"), 0, 48)])
        elif how == "virtual":
            layout = h5py.VirtualLayout(shape=(3, 4), dtype="float32")
            layout[:] = h5py.VirtualSource(str(other), "data", shape=(3, 4))
            group.create_virtual_dataset("0", layout)
        elif how == "strings":
            group["0"] = np.array([b"abc", b"def"])


@pytest.mark.parametrize("how, fragment", [
    ("external_link", "external link"), ("external_storage", "external file"),
    ("virtual", "virtual dataset"), ("strings", "not numbers")])
def test_weights_files_that_read_other_files_are_refused(tmp_path, how, fragment):
    from cifarkit.runs.init import read_layers

    path = tmp_path / "w.weights.h5"
    _h5_with(path, how, tmp_path)
    with pytest.raises(RecipeError, match=fragment):
        read_layers(path, "train.init_from")


def test_only_the_layers_the_model_has_are_read(tmp_path):
    """A dataset declared huge (64 GiB, never written) is not read when the model has no
    layer of that name and shape: its shape is all that is looked at."""
    import h5py

    from cifarkit.runs.init import read_layers

    path = tmp_path / "w.weights.h5"
    with h5py.File(path, "w") as f:
        big = f.create_group("layers/big/vars")
        big.attrs["name"] = "big"
        big.create_dataset("0", (1 << 18, 1 << 16), "float32")  # 64 GiB, unallocated
        small = f.create_group("layers/small/vars")
        small.attrs["name"] = "small"
        small["0"] = np.ones((2, 2), "float32")
    got = read_layers(path, "train.init_from", wanted={"small": [(2, 2)]})
    assert got["big"] == [(1 << 18, 1 << 16)]
    np.testing.assert_array_equal(got["small"][0], np.ones((2, 2)))


def test_a_keras_archive_whose_member_would_inflate_past_its_bound_is_refused(tmp_path):
    import zipfile

    from cifarkit.files import check_keras_archive

    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", " " * (20 << 20))  # 20 MB of whitespace, tiny zipped
        archive.writestr("model.weights.h5", b"")
    assert path.stat().st_size < 1 << 20
    with pytest.raises(ValueError, match="config.json would inflate to"):
        check_keras_archive(path)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil.py", "import os")
    with pytest.raises(ValueError, match="no part of a Keras model file"):
        check_keras_archive(path)


def test_a_storage_password_is_never_printed_or_stored(tmp_path, cifar10_dir):
    from test_history import SEARCH

    from conftest import write_tiny_recipe

    recipe = write_tiny_recipe(tmp_path / "s.toml", cifar10_dir, "s", 16, SEARCH)
    url = "postgresql://bob:s3cret-pw@127.0.0.1:9/optuna"
    result = cli("sweep", str(recipe), "--storage", url, "-o", str(tmp_path / "runs"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert "postgresql://bob:***@127.0.0.1:9/optuna" in result.stderr
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or b"s3cret-pw" not in path.read_bytes(), path


def test_a_masked_storage_needs_the_whole_url_to_resume(tmp_path):
    from cifarkit.sweeps import folder as sweep

    folder = tmp_path / "s"
    folder.mkdir()
    sweep.write_state(folder, {"mode": "search", "trials": [], "recipe": "default",
                               "storage": masked_url("postgresql://u:pw@h/db")})
    assert "pw" not in (folder / "sweep.json").read_text().replace("postgresql", "")
    result = cli("sweep", "--resume", str(folder))
    assert result.returncode == 2 and "pass --storage with the whole URL" in result.stderr
    other = cli("sweep", "--resume", str(folder), "--storage", "postgresql://u:pw@other/db")
    assert other.returncode == 2 and "is not this sweep's storage" in other.stderr
    assert "pw@" not in other.stderr


@pytest.mark.slow  # trains
def test_the_last_partial_batch_is_trained_on(tmp_path, cifar10_dir):
    from conftest import TINY_MODEL

    sets = [f"data.path={cifar10_dir}", "train.epochs=1", "data.batch_size=64",
            "strategy.plugin=one_device", *TINY_MODEL]
    result = cli("run", "default", *[a for s in sets for a in ("--set", s)], "--output",
                 str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr[-2000:]
    header = " ".join(result.stdout.split())
    # 100 images, 10 % validation: 90 train, batch 64 -> a step of 64 and one of 26
    assert "1 epoch x 2 steps" in header and "left out" not in header


def test_the_header_says_what_equal_batches_leave_out():
    """Where the replicas need equal batches (tf.distribute over several), the header
    says how many examples each pass leaves out."""
    from types import SimpleNamespace

    from cifarkit.runs.summary import _left_out

    def run(drops, n=90, batch=64, steps_per_epoch=None):
        return SimpleNamespace(
            data=SimpleNamespace(x_train=range(n)),
            recipe=SimpleNamespace(data=SimpleNamespace(batch_size=batch),
                                   train=SimpleNamespace(steps_per_epoch=steps_per_epoch)),
            parts=SimpleNamespace(drops_partial_batch=drops, replicas=2))

    assert _left_out(run(True)).startswith("26 of 90 training examples per pass")
    assert _left_out(run(False)) is None
    assert _left_out(run(True, n=128)) is None
    assert _left_out(run(True, steps_per_epoch=3)) is None


@pytest.mark.slow
def test_a_sweep_records_its_trial_at_once_locks_its_folder_and_its_trials_die_with_it(
        tmp_path, cifar10_dir):
    """The trial's run directory is in sweep.json while it trains; a second sweep of the
    folder is one line; killing the sweep (-9) stops its trial (it does not train on
    alone); the resumed sweep continues that trial's run instead of starting another."""
    from cifarkit.sweeps import folder as sweep
    from cifarkit.runs.lock import RunLock
    from conftest import held, write_slow_recipe

    recipe = write_slow_recipe(tmp_path, cifar10_dir, "s", epochs=2, steps=3)
    runs = tmp_path / "runs"
    with held(tmp_path, 1, 2, "sweep", str(recipe), "--grid", "seed=5", "-o", str(runs)) as proc:
        trial_pid = int((tmp_path / "holding").read_text())
        (folder,) = runs.iterdir()
        state = json.loads((folder / "sweep.json").read_text())
        (trial,) = state["trials"]
        assert trial["run_dir"] and (folder / trial["run_dir"]).is_dir()
        second = cli("sweep", "--resume", str(folder))
        assert second.returncode == 2 and "in use by process" in second.stderr, second.stderr
        proc.kill()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the trial got SIGTERM when its sweep died
        try:
            os.kill(trial_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(trial_pid, signal.SIGKILL)
        pytest.fail("the trial trained on after its sweep was killed")
    with RunLock(folder):
        pass  # nobody holds the folder now
    resumed = cifarkit("sweep", "--resume", str(folder))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len([p for p in folder.iterdir() if p.is_dir()]) == 1  # the same trial, continued
    assert json.loads((folder / "sweep.json").read_text())["trials"][0]["run_dir"] == \
        trial["run_dir"]
    assert sweep.read_state(folder)["trials"][0]["run_dir"] == trial["run_dir"]


@pytest.mark.parametrize("name", ["sweep.json", ".signature", ".lock"])
def test_every_sweep_command_survives_every_hostile_sweep_file(tmp_path, name):
    """A sweep folder's own files, hostile in each way: `runs` on its parent and on it,
    and `sweep --resume` (with and without --trust-run) end in exit 0 or one line."""
    from cifarkit.sweeps import folder as sweep

    outside = tmp_path / "outside" / "notes.txt"
    outside.parent.mkdir()
    outside.write_text("my notes\n")
    folder = tmp_path / "runs" / "s-sweep-1"
    folder.mkdir(parents=True)
    WRONG["sweep.json"] = json.dumps({"mode": 5, "trials": 5, "recipe": ["x"],
                                      "started_at": {"a": 1}})
    for kind in KINDS:
        if os.path.lexists(folder / name):  # the last kind's plant: cifarkit writes through none
            (folder / name).unlink()
        sweep.write_state(folder, {"mode": "grid", "recipe": "default", "recipe_name": "s",
                                   "set": [], "trials": []})
        plant(folder, name, kind, outside)
        for args in (["runs", str(folder.parent)], ["runs", str(folder)],
                     ["sweep", "--resume", str(folder)],
                     ["sweep", "--resume", str(folder), "--trust-run"]):
            with deadline(30):
                result = cli(*args)
            assert_clean_outcome(result, f"{args[0]} with {name} as {kind}")
            assert outside.read_text() == "my notes\n"


@pytest.mark.slow
def test_a_resumed_search_continues_the_trial_its_killed_sweep_left(tmp_path, cifar10_dir):
    """An Optuna search killed while a trial trains: the resumed sweep resumes that trial's
    run and tells its Optuna trial the outcome, instead of failing it and asking another."""
    import optuna

    from conftest import held, write_tiny_recipe
    from test_history import SEARCH

    recipe = write_tiny_recipe(tmp_path / "s.toml", cifar10_dir, "s", 16,
                               SEARCH + "\n[strategy]\nplugin = \"one_device\"\n")
    runs = tmp_path / "runs"
    with held(tmp_path, 1, 2, "sweep", str(recipe), "--trials", "1", "-o", str(runs)) as proc:
        (folder,) = runs.iterdir()
        proc.kill()
    time.sleep(1)
    resumed = cifarkit("sweep", "--resume", str(folder), "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    state = json.loads((folder / "sweep.json").read_text())
    (trial,) = state["trials"]
    assert trial["status"] == "completed"
    assert [p.name for p in folder.iterdir() if p.is_dir()] == [trial["run_dir"]]
    study = optuna.load_study(study_name=state["study"], storage=state["storage"])
    (done,) = study.trials
    assert done.state == optuna.trial.TrialState.COMPLETE and done.value is not None


def test_init_from_a_fifo_or_a_device_is_one_line_not_a_hang(tmp_path):
    from cifarkit.runs.init import source_file

    fifo = tmp_path / "w.weights.h5"
    os.mkfifo(fifo)
    link = tmp_path / "zero.keras"
    link.symlink_to("/dev/zero")
    for path in (fifo, link):
        with deadline(10), pytest.raises(RecipeError, match="is not a regular file"):
            source_file(path, "train.init_from")
