"""`cifarkit runs` and `cifarkit compare`: past runs listed and compared from their files."""

import json

import pytest

from cifarkit.runs.lock import RunLock
from conftest import cifarkit, cli


def fake_run(folder, name, status="completed", lr=1e-3, epochs=2, val=(0.3, 0.5), test=0.48,
             started="2026-11-30T01:00:00+00:00"):
    """A run directory as cifarkit writes one: summary.json, metrics.csv, recipe.toml."""
    run_dir = folder / name
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps({
        "status": status, "recipe": "default", "backend": "jax", "epochs_run": len(val),
        "epochs_planned": epochs, "test_accuracy": test, "test_loss": 1.5,
        "train_time_s": 12.5, "started_at": started}))
    lines = ["epoch,accuracy,loss,val_accuracy,val_loss"]
    lines += [f"{i + 1},{v - 0.05},{2 - v},{v},{2.1 - v}" for i, v in enumerate(val)]
    (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")
    (run_dir / "recipe.toml").write_text(
        f'name = "default"\nseed = 0\n[train]\nlearning_rate = {lr}\nepochs = {epochs}\n'
        '[[callbacks]]\nplugin = "early_stopping"\npatience = 10\n')
    return run_dir


def test_runs_lists_every_folder_sorted_and_piped_as_plain_lines(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "a", val=(0.3, 0.5), test=0.48, started="2026-11-30T01:00:00+00:00")
    fake_run(runs, "b", status="interrupted", val=(0.6,), test=None,
             started="2026-11-30T02:00:00+00:00")
    live = fake_run(runs, "c", status="running", val=(0.2,), test=None,
                    started="2026-11-30T03:00:00+00:00")
    fake_run(runs, "d", status="running", val=(0.1,), test=None)  # its process died
    (runs / "junk").mkdir()
    (runs / "junk" / "summary.json").write_text("{not json")
    (runs / "empty").mkdir()
    with RunLock(live):
        listed = cli("runs", str(runs), "--sort", "best_val_accuracy")
        data = json.loads(cli("runs", str(runs), "--json").stdout)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:4] == ["run", "recipe", "backend", "status"]
    assert not any(c in listed.stdout for c in "│┃━─")  # plain lines when piped
    order = [line.split()[0] for line in lines[1:]]
    assert order[:4] == ["b", "a", "c", "d"]  # best validation accuracy first
    assert set(order[4:]) == {"junk", "empty"}
    status = {r["name"]: r["status"] for r in data}
    assert status == {"a": "completed", "b": "interrupted", "c": "running", "d": "crashed",
                      "junk": "unreadable", "empty": "unreadable"}
    by_name = {r["name"]: r for r in data}
    assert by_name["a"]["epochs"] == "2/2" and by_name["b"]["epochs"] == "1/2"
    assert by_name["a"]["best_val_accuracy"] == 0.5 and by_name["a"]["test_accuracy"] == 0.48
    assert "no summary.json" in by_name["empty"]["error"]
    assert [r["name"] for r in data][:3] == ["c", "b", "a"]  # default: newest first


def test_runs_refuses_a_missing_folder_and_an_unknown_sort_key_in_one_line(tmp_path):
    missing = cli("runs", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    fake_run(tmp_path, "a")
    bad = cli("runs", str(tmp_path), "--sort", "speed")
    assert bad.returncode == 2 and "use one of name, recipe" in bad.stderr


def test_runs_adds_a_column_per_differing_recipe_key_and_filters_with_where(tmp_path):
    fake_run(tmp_path, "a", lr=1e-3)
    fake_run(tmp_path, "b", lr=1e-2)
    fake_run(tmp_path, "c", lr=1e-2, epochs=3, val=(0.1, 0.2, 0.3), status="interrupted")
    (tmp_path / "junk").mkdir()
    table = cli("runs", str(tmp_path), "--sort", "train.learning_rate").stdout.splitlines()
    # the keys that matter first (the learning rate before the epochs); no backend column
    # where every run has the same backend
    assert table[0].split()[:5] == ["run", "recipe", "train.learning_rate", "train.epochs",
                                    "status"]
    assert table[1].split()[2:4] == ["0.001", "2"] and table[3].split()[2:4] == ["0.01", "3"]
    assert table[4].split()[:2] == ["junk", "unreadable"]
    rows = json.loads(cli("runs", str(tmp_path), "--where", "train.learning_rate=1e-2",
                          "--json").stdout)
    assert [(r["name"], r["recipe_keys"]) for r in rows] == [("b", {"train.epochs": 2}),
                                                             ("c", {"train.epochs": 3})]
    both = json.loads(cli("runs", str(tmp_path), "--where", "train.learning_rate=0.01",
                          "--where", "status=completed", "--json").stdout)
    assert [(r["name"], r["recipe_keys"]) for r in both] == [("b", {})]
    none = cli("runs", str(tmp_path), "--where", "train.epochs=9")
    assert none.returncode == 0 and "no run directories in" in none.stdout
    for bad, message in (("train.learnin_rate=1", "did you mean 'train.learning_rate'"),
                         ("seed", "expected KEY=VALUE")):
        refused = cli("runs", str(tmp_path), "--where", bad)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr


def test_compare_prints_the_keys_that_differ_the_figures_and_writes_the_curves(tmp_path):
    a = fake_run(tmp_path, "a", lr=1e-3)
    b = fake_run(tmp_path, "b", lr=1e-2, epochs=3, val=(0.2, 0.4, 0.6), test=0.55)
    plot = tmp_path / "out" / "cmp.png"
    shown = cli("compare", str(a), str(b), "--plot", str(plot))
    assert shown.returncode == 0, shown.stderr
    assert "train.learning_rate" in shown.stdout and "train.epochs" in shown.stdout
    assert "seed" not in shown.stdout.split("run ")[0]  # same in both: not a difference
    assert "55.00 %" in shown.stdout and f"curves: {plot}" in shown.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(cli("compare", str(a), str(b), "--plot", str(plot), "--json").stdout)
    assert data["differences"] == {"train.epochs": [2, 3], "train.learning_rate": [1e-3, 1e-2]}
    # compare.png's legend: each run by name, with the keys that differ, those that matter first
    assert data["labels"] == ["a\n  train.learning_rate=0.001\n  train.epochs=2",
                              "b\n  train.learning_rate=0.01\n  train.epochs=3"]
    assert [r["test_accuracy"] for r in data["runs"]] == [0.48, 0.55]


@pytest.mark.parametrize("second", ["missing", "junk"])
def test_compare_refuses_a_folder_that_is_not_a_run_in_one_line(tmp_path, second):
    a = fake_run(tmp_path, "a")
    (tmp_path / "junk").mkdir()
    result = cli("compare", str(a), str(tmp_path / second), "--plot", str(tmp_path / "p.png"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "p.png").exists()


def test_show_prints_the_resolved_recipe_its_plugins_and_the_model(tmp_path, cifar10_dir):
    import tomllib

    from conftest import ROOT, TINY_MODEL, cli

    sets = [a for s in [f"data.path={cifar10_dir}", "train.epochs=3", *TINY_MODEL]
            for a in ("--set", s)]
    shown = cli("show", str(ROOT / "recipes" / "default.toml"), *sets)
    assert shown.returncode == 0, shown.stderr[-2000:]
    recipe_text, rest = shown.stdout.split("# plugins\n")
    recipe = tomllib.loads(recipe_text)
    assert recipe["train"]["epochs"] == 3
    assert recipe["train"]["label_smoothing"] == 0.0  # defaults included
    assert "model: model 'seed_cnn' from built-in" in rest
    assert "dense_units = 8  (" in rest and "--set model.dense_units=8" in rest
    assert "dense_dropout = 0.5  (default)" in rest
    assert "block1_conv1 (Conv2D)" in rest and "parameters: " in rest
    assert not list(tmp_path.iterdir())  # nothing written
    on_jax = cli("show", str(ROOT / "recipes" / "default.toml"), *sets, "--backend", "jax",
                 "--no-model")
    assert tomllib.loads(on_jax.stdout.split("# plugins\n")[0])["train"]["backend"] == "jax"
    bad = cli("show", str(ROOT / "recipes" / "default.toml"), "--set", "train.epochs=0")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    missing = cli("show", str(ROOT / "recipes" / "default.toml"), "--set",
                  f"data.path={tmp_path / 'nowhere'}")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    # no image is read: a copy holding only its meta file shows the same model
    import shutil

    meta_only = tmp_path / "meta" / "cifar-10-batches-py"
    meta_only.mkdir(parents=True)
    shutil.copy(cifar10_dir / "batches.meta", meta_only)
    sets[1] = f"data.path={meta_only}"
    again = cli("show", str(ROOT / "recipes" / "default.toml"), *sets)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.split("# plugins\n")[1].replace(str(meta_only), str(cifar10_dir)) == rest



def sweep_dir(runs):
    (folder,) = [p for p in runs.iterdir() if (p / "sweep.json").exists()]
    return folder


@pytest.mark.slow
def test_a_grid_sweep_runs_each_combination_and_tables_them(tmp_path, cifar10_dir):
    from conftest import write_tiny_recipe

    recipe = write_tiny_recipe(tmp_path / "g.toml", cifar10_dir, "g", 16)
    runs = tmp_path / "runs"
    done = cifarkit("sweep", str(recipe), "--backend", "jax", "--set", "train.epochs=1",
                    "--grid", "train.learning_rate=0.01,0.001",
                    "--grid", "model.filters=[4,8],[8,8]", "-o", str(runs))
    assert done.returncode == 0, done.stderr[-3000:]
    folder = sweep_dir(runs)
    trials = json.loads((folder / "sweep.json").read_text())["trials"]
    assert [t["values"] for t in trials] == [
        {"train.learning_rate": "0.01", "model.filters": "[4,8]"},
        {"train.learning_rate": "0.01", "model.filters": "[8,8]"},
        {"train.learning_rate": "0.001", "model.filters": "[4,8]"},
        {"train.learning_rate": "0.001", "model.filters": "[8,8]"}]
    for t in trials:  # each trial an ordinary run directory, with its values applied
        text = (folder / t["run_dir"] / "recipe.toml").read_text()
        assert f"learning_rate = {t['values']['train.learning_rate']}" in text
    assert "trial  train.learning_rate  model.filters  status" in done.stdout
    assert done.stdout.count(" completed ") >= 4 and "best: trial " in done.stdout
    listed = json.loads(cli("runs", str(folder), "--json").stdout)
    assert sorted(r["status"] for r in listed) == ["completed"] * 4
    parent = json.loads(cli("runs", str(runs), "--json").stdout)
    assert [(r["status"], r["epochs"]) for r in parent] == [("sweep", "4 trials")]


def test_a_bad_grid_is_one_line_and_writes_nothing(tmp_path, cifar10_dir):
    from conftest import write_tiny_recipe

    recipe = write_tiny_recipe(tmp_path / "g.toml", cifar10_dir, "g", 16)
    for grid in ("train.learning_rate=0.01,abc", "train.learning_rate", "nokey=1,2"):
        bad = cifarkit("sweep", str(recipe), "--grid", grid, "-o", str(tmp_path / "runs"))
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1, (grid, bad.stderr)
    assert not (tmp_path / "runs").exists()


def interrupted_sweep(runs, *args):
    """Start ``cifarkit sweep ARGS -o RUNS``, Ctrl-C it while trial 1 trains; check it
    exits 130 saying how to continue, and return the sweep folder."""
    import signal

    from conftest import running, wait_for_rows

    with running("sweep", *args, "-o", str(runs)) as proc:
        while not any(runs.glob("*/sweep.json")):
            assert proc.poll() is None, proc.stderr.read()[-2000:]
        wait_for_rows(sweep_dir(runs), 1, proc)  # trial 1 is training
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert "continue with: cifarkit sweep --resume" in err
    return sweep_dir(runs)


@pytest.mark.slow
def test_ctrl_c_stops_a_sweep_after_the_current_trial_and_it_resumes(tmp_path, cifar10_dir):
    from conftest import write_slow_recipe

    recipe = write_slow_recipe(tmp_path, cifar10_dir, epochs=2, steps=40)
    folder = interrupted_sweep(tmp_path / "runs", str(recipe), "--grid",
                               "train.learning_rate=0.001,0.002")
    first, second = json.loads((folder / "sweep.json").read_text())["trials"]
    assert json.loads((folder / first["run_dir"] / "summary.json").read_text())["status"] \
        == "completed"  # the current trial finished
    assert second["run_dir"] is None  # the next one never started
    resumed = cifarkit("sweep", "--resume", str(folder))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    statuses = [r["status"] for r in json.loads(cli("runs", str(folder), "--json").stdout)]
    assert statuses == ["completed", "completed"]


SEARCH = """
[train]
epochs = 2
[sweep]
trials = 3
pruner = "none"
[sweep.params]
"train.learning_rate" = { type = "float", low = 1e-4, high = 1e-1, log = true }
"model.dense_units" = { type = "categorical", choices = [8, 16] }
"""


@pytest.mark.slow
def test_a_search_asks_optuna_reports_each_epoch_and_tables_the_trials(tmp_path, cifar10_dir):
    import optuna

    from conftest import write_tiny_recipe

    recipe = write_tiny_recipe(tmp_path / "s.toml", cifar10_dir, "s", 16, SEARCH)
    runs = tmp_path / "runs"
    done = cifarkit("sweep", str(recipe), "--backend", "jax", "-o", str(runs))
    assert done.returncode == 0, done.stderr[-3000:]
    folder = sweep_dir(runs)
    state = json.loads((folder / "sweep.json").read_text())
    study = optuna.load_study(study_name=state["study"], storage=state["storage"])
    assert state["storage"] == f"sqlite:///{folder / 'optuna.db'}"
    assert len(study.trials) == 3 and len(state["trials"]) == 3
    for trial, record in zip(study.trials, state["trials"]):
        assert trial.state == optuna.trial.TrialState.COMPLETE
        run_dir = folder / record["run_dir"]
        text = (run_dir / "recipe.toml").read_text()
        assert f"dense_units = {trial.params['model.dense_units']}" in text
        val = [float(r["val_accuracy"]) for r in csv_rows(run_dir / "metrics.csv")]
        assert trial.intermediate_values == {1: val[0], 2: val[1]}  # reported each epoch
        assert trial.value == max(val)
    assert f"best in the study: trial {study.best_trial.number + 1}" in done.stdout
    assert "train.learning_rate" in done.stdout and "model.dense_units" in done.stdout


def csv_rows(path):
    import csv

    return list(csv.DictReader(path.open()))


@pytest.mark.slow
def test_two_workers_share_one_study_through_its_storage(tmp_path, cifar10_dir):
    import optuna

    from conftest import start, write_tiny_recipe

    recipe = write_tiny_recipe(tmp_path / "s.toml", cifar10_dir, "s", 16, SEARCH)
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    workers = [start("sweep", str(recipe), "--backend", "jax", "--trials", "4", "--storage",
                     storage, "--study", "shared", "-o", str(tmp_path / f"w{i}"))
               for i in range(2)]
    for proc in workers:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name="shared", storage=storage)
    assert 4 <= len(study.trials) <= 5  # each worker checks the count before it asks
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    ran = [len(json.loads((sweep_dir(tmp_path / f"w{i}") / "sweep.json").read_text())["trials"])
           for i in range(2)]
    assert sum(ran) == len(study.trials) and min(ran) >= 1  # both took part


@pytest.mark.parametrize("params, fragment", [
    ('"train.learning_rate" = { type = "float", low = 0.1, high = 0.01 }', "low must be below high"),
    ('"train.learning_rate" = { type = "normal", low = 0.1, high = 0.2 }', 'type = "float"'),
    ('"train.learning_rate" = { type = "float", low = 0.1, high = 20.0 }', "train.learning_rate"),
    ('"model.nope" = { type = "categorical", choices = [1, 2] }', "nope"),
    ('"data.batch_size" = { type = "int", low = 8, hi = 64 }', "unknown key 'hi'"),
])
def test_a_bad_search_space_is_one_line_and_writes_nothing(tmp_path, cifar10_dir, params,
                                                            fragment):
    from conftest import write_tiny_recipe

    recipe = write_tiny_recipe(tmp_path / "s.toml", cifar10_dir, "s", 16,
                               "[sweep.params]\n" + params + "\n")
    bad = cifarkit("sweep", str(recipe), "-o", str(tmp_path / "runs"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert fragment in bad.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_ctrl_c_stops_a_search_after_the_current_trial_and_it_resumes(tmp_path, cifar10_dir):
    import optuna

    from conftest import SLOW_EPOCHS, write_tiny_recipe

    recipe = write_tiny_recipe(tmp_path / "s.toml", cifar10_dir, "s", 16,
                               SLOW_EPOCHS.format(epochs=2, steps=40) + SEARCH.replace(
                                   "[train]\nepochs = 2\n", ""))
    folder = interrupted_sweep(tmp_path / "runs", str(recipe), "--trials", "2")
    state = json.loads((folder / "sweep.json").read_text())
    assert [t["status"] for t in state["trials"]] == ["completed"]  # finished, none asked after
    resumed = cifarkit("sweep", "--resume", str(folder))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    study = optuna.load_study(study_name=state["study"], storage=state["storage"])
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2


def test_runs_fits_the_terminal_keeping_what_matters(tmp_path):
    """A narrow terminal: the run, its outcome and the most telling differing key stay;
    what is left out is named."""
    fake_run(tmp_path, "a-20261208-101010", lr=1e-3)
    fake_run(tmp_path, "b-20261208-101011", lr=1e-2, epochs=3, val=(0.1, 0.2, 0.3))
    for width in (60, 80, 100, 200):
        result = cli("runs", str(tmp_path), env={"COLUMNS": str(width)})
        assert result.returncode == 0, result.stderr
        table = [line for line in result.stdout.splitlines() if "more recipe" not in line
                 and "left out" not in line]
        assert max(len(line) for line in table) <= width, (width, result.stdout)
        assert table[0].startswith("run") and "test acc" in table[0]
        if width >= 80:
            assert "train.learning_rate" in table[0]
    assert "left out to fit 60 columns" in cli("runs", str(tmp_path),
                                               env={"COLUMNS": "60"}).stdout
