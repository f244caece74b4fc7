"""The command line, end to end, as a user runs it."""

import csv
import json
import subprocess
import sys
import textwrap

import pytest

from conftest import DEFAULT_RECIPE, ROOT, cifarkit, cli, tiny_overrides

ANSI = "\x1b["


def test_help_version_and_list_plugins_do_not_import_tensorflow():
    code = textwrap.dedent("""
        import contextlib, io, sys
        from cifarkit.cli import main
        for argv in (["--help"], ["run", "--help"], ["list-plugins", "--help"], ["--version"]):
            with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
                main(argv)
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["list-plugins"]) == 0
            assert main(["list-plugins", "--json"]) == 0
        print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_version_and_help():
    assert cifarkit("--version").stdout.startswith("cifarkit ")
    helped = cifarkit("run", "--help")
    assert helped.returncode == 0 and "--set KEY=VALUE" in helped.stdout and "--output" in helped.stdout
    assert "--json" in cifarkit("list-plugins", "--help").stdout


def test_list_plugins_json_lists_every_kind_with_parameters():
    result = cifarkit("list-plugins", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    kinds = {p["kind"] for p in doc["plugins"]}
    assert {"augmentation", "model", "strategy", "callback"} <= kinds
    seed = next(p for p in doc["plugins"] if p["name"] == "seed_cnn")
    assert seed["source"] == "built-in" and seed["summary"]
    assert {"name": "dense_units", "type": "int in [1, 65536]", "default": 256} .items() <= \
        next(p for p in seed["parameters"] if p["name"] == "dense_units").items()
    assert doc["broken"] == []


def test_list_plugins_table_and_single_plugin():
    table = cifarkit("list-plugins")
    assert table.returncode == 0
    for word in ("augmentation plugins", "random_rotation", "seed_cnn", "mirrored", "early_stopping"):
        assert word in table.stdout
    one = cifarkit("list-plugins", "early_stopping")
    assert "restore_best_weights" in one.stdout and "Stop training" in one.stdout
    missing = cifarkit("list-plugins", "early_stoping")
    assert missing.returncode == 2 and "did you mean 'early_stopping'" in missing.stderr


BAD_RECIPES = {
    "misspelt plugin": ('[model]\nplugin = "seed_cn"\n', "did you mean 'seed_cnn'"),
    "string for int": ('[model]\nplugin = "seed_cnn"\n[train]\nepochs = "ten"\n',
                       "train.epochs: expected int"),
    "toml syntax": ('[model]\nplugin = "seed_cnn"\n[train\nepochs = 1\n', "TOML syntax error"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECIPES))
def test_bad_recipes_exit_2_with_one_line_and_write_nothing(tmp_path, case):
    body, fragment = BAD_RECIPES[case]
    recipe = tmp_path / "bad.toml"
    recipe.write_text(body)
    out = tmp_path / "runs"
    result = cifarkit("run", str(recipe), "--output", str(out))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cifarkit: error: {recipe}")
    assert fragment in lines[0] and "Traceback" not in result.stderr
    assert not out.exists()


def test_missing_data_path_fails_before_anything_is_written(tmp_path):
    out = tmp_path / "runs"
    result = cifarkit("run", str(DEFAULT_RECIPE), "--set", f"data.path={tmp_path / 'nowhere'}",
                      "--output", str(out))
    assert result.returncode == 2
    # The error names both places that chose the dataset's parameters: the file and the --set.
    assert result.stderr.strip() == (f"cifarkit: error: {DEFAULT_RECIPE} + --set data.path="
                                     f"{tmp_path / 'nowhere'}: data: "
                                     f"{tmp_path / 'nowhere'}: data path not found (data.path)")
    assert not out.exists()


def test_unwritable_output_is_a_user_error(tmp_path, cifar10_dir):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = cifarkit("run", str(DEFAULT_RECIPE), *[a for o in tiny_overrides(cifar10_dir) for a in ("--set", o)],
                      "--output", str(blocker / "runs"))
    assert result.returncode == 2 and "is not a directory" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_run_default_recipe_end_to_end(tmp_path, cifar10_dir):
    out = tmp_path / "runs"
    sets = [a for o in tiny_overrides(cifar10_dir, epochs=2) for a in ("--set", o)]
    result = cifarkit("run", str(DEFAULT_RECIPE), *sets, "--output", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # The report: a line per epoch and the final summary, plain text when piped.
    assert "epoch 1/2" in result.stdout and "epoch 2/2" in result.stdout
    for row in ("test accuracy", "best epoch", "epochs run", "wall time", "throughput", "run directory"):
        assert row in result.stdout
    assert ANSI not in result.stdout and ANSI not in result.stderr
    assert "I0000" not in result.stderr  # TensorFlow's start-up chatter is hidden
    assert "evaluating the test split: 40/40 images" in result.stdout  # no silent minute

    (run_dir,) = out.iterdir()
    assert run_dir.name.startswith("default-")
    names = {p.name for p in run_dir.iterdir()}
    assert {"recipe.toml", "metrics.csv", "timing.csv", "summary.json", "model.keras",
            "accuracy.png", "loss.png", "learning_rate.png", "confusion_matrix.png",
            "confusion_matrix_normalized.png", "run.log", ".signature",
            "checkpoint"} == names  # the final checkpoint: what training on needs
    assert not [n for n in names if n.startswith(".") and n != ".signature"]  # no temporary files

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    for key in ("test_accuracy", "test_loss", "epochs_run", "best_epoch", "wall_time_s",
                "train_images_per_s"):
        assert summary[key] is not None, key
    assert summary["epochs_run"] == 2 and summary["best_epoch"] in (1, 2)
    assert set(summary["versions"]) >= {"cifarkit", "keras", "tensorflow"}
    assert summary["train_examples"] == 90 and summary["validation_examples"] == 10
    assert summary["test_examples"] == 40

    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert set(rows[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}
    timing = list(csv.DictReader((run_dir / "timing.csv").open()))
    assert [set(r) for r in timing] == [{"epoch", "epoch_time_s", "train_time_s", "compile_time_s",
                                         "steady_train_time_s", "images_per_s"}] * 2
    # compilation is the first epoch's extra time over the second's; the second compiles nothing
    first, second = ({k: float(v) for k, v in r.items()} for r in timing)
    close = dict(rel=1e-4, abs=1e-4)  # timing.csv keeps 6 significant digits
    assert first["compile_time_s"] == pytest.approx(
        max(0.0, first["train_time_s"] - second["train_time_s"]), **close)
    assert first["steady_train_time_s"] == pytest.approx(
        first["train_time_s"] - first["compile_time_s"], **close)
    assert second["compile_time_s"] == 0.0
    assert summary["backend"] == "tensorflow"
    assert summary["compile_time_s"] == pytest.approx(first["compile_time_s"], **close)
    assert abs(summary["steady_train_time_s"] + summary["compile_time_s"]
               - summary["train_time_s"]) < 1e-6
    assert set(summary["per_class_accuracy"]) == set(summary["class_names"])
    for png in ("accuracy.png", "loss.png", "learning_rate.png", "confusion_matrix.png",
                "confusion_matrix_normalized.png"):
        assert (run_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "adam lr 0.001, constant rate" in result.stdout  # the header names the schedule

    # model.keras loads with plain Keras (no cifarkit import), takes raw 0-255
    # images, and reproduces the reported test accuracy.
    check = textwrap.dedent(f"""
        import json, pickle, sys
        import numpy as np, keras
        model = keras.models.load_model({str(run_dir / 'model.keras')!r})
        with open({str(cifar10_dir / 'test_batch')!r}, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        x = batch[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        y = np.array(batch[b"labels"])
        acc = float((model.predict(x, verbose=0).argmax(1) == y).mean())
        assert "cifarkit" not in sys.modules
        print(json.dumps(acc))
    """)
    reloaded = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert reloaded.returncode == 0, reloaded.stderr[-2000:]
    assert float(reloaded.stdout.strip().splitlines()[-1]) == pytest.approx(summary["test_accuracy"], abs=1e-6)

    # The resolved recipe reruns as is.
    rerun = cli("run", str(run_dir / "recipe.toml"), "--output", str(tmp_path / "again"),
                "--set", "train.epochs=1")
    assert rerun.returncode == 0, rerun.stderr[-2000:]


def test_builtin_recipe_by_name_resolves(tmp_path):
    from cifarkit.core.recipe import locate_recipe
    from cifarkit.errors import RecipeError

    shipped = (ROOT / "recipes" / "default.toml").read_text()
    assert locate_recipe("default").read_text() == shipped
    assert locate_recipe("default.toml", tmp_path).read_text() == shipped  # as extends reads it
    assert str(locate_recipe("nonexistent", tmp_path)) == str(tmp_path / "nonexistent")  # extends
    with pytest.raises(RecipeError, match="ships no recipe of that name .shipped: default"):
        locate_recipe("nonexistent")  # the command line: which names there are
    (tmp_path / "default.toml").write_text("# mine\n")  # a local file wins over the shipped one
    assert locate_recipe("default.toml", tmp_path) == tmp_path / "default.toml"


def test_no_local_copy_and_no_network_says_to_pass_data_path(tmp_path):
    dead_proxy = "http://127.0.0.1:9"  # nothing listens: the download fails at once, offline or not
    result = cifarkit("run", "default", "--output", str(tmp_path / "runs"),
                      env={"KERAS_HOME": str(tmp_path / "keras"), "https_proxy": dead_proxy,
                           "HTTPS_PROXY": dead_proxy, "http_proxy": dead_proxy,
                           "HTTP_PROXY": dead_proxy}, timeout=120)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert "could not load cifar10 through keras.datasets" in line
    assert "--set data.path=" in line
    assert "I0000" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_misspelt_command_or_recipe_name_gets_a_suggestion():
    command = cli("rn", "default")
    assert command.returncode == 2 and command.stderr.count("\n") == 1
    assert "unknown command 'rn'; did you mean 'run'?" in command.stderr
    recipe = cli("show", "fst", "--no-model")
    assert recipe.returncode == 2 and recipe.stderr.count("\n") == 1
    assert "ships no recipe of that name; did you mean 'fast'?" in recipe.stderr


def test_shell_completion_code_and_what_a_tab_press_completes(tmp_path):
    bash = cifarkit("completion", "bash")
    assert bash.returncode == 0 and "complete " in bash.stdout
    assert subprocess.run(["bash", "-n"], input=bash.stdout, text=True).returncode == 0
    assert "complete " in cifarkit("completion", "fish").stdout
    assert "#compdef cifarkit" in cifarkit("completion", "zsh").stdout
    assert "invalid choice: 'csh'" in cifarkit("completion", "csh").stderr
    (tmp_path / "mine.toml").write_text("")
    (tmp_path / "notes.txt").write_text("")

    def tab(line):  # what argcomplete answers the shell code for COMP_LINE
        out = tmp_path / "completions"
        cifarkit(env={"_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
                      "_ARGCOMPLETE_STDOUT_FILENAME": str(out)}, cwd=tmp_path)
        return sorted(word.strip() for word in out.read_text().split("\v"))

    assert tab("cifarkit ru") == ["run", "runs"]
    assert tab("cifarkit run fa") == ["fast"]
    assert tab("cifarkit show m") == ["mine.toml"]
    assert tab("cifarkit run fast --back") == ["--backend"]
    assert tab("cifarkit run fast --backend ") == ["jax", "tensorflow"]


def test_key_value_after_the_recipe_is_a_set():
    shown = cli("show", "fast", "train.epochs=3", "data.batch_size=256", "--set",
                "seed=7", "--no-model", "--json")
    assert shown.returncode == 0, shown.stderr
    resolved = json.loads(shown.stdout)["recipe"]
    assert (resolved["train"]["epochs"], resolved["data"]["batch_size"], resolved["seed"]) \
        == (3, 256, 7)
    stray = cli("show", "fast", "epochs")
    assert stray.returncode == 2 and "unexpected argument 'epochs'" in stray.stderr
    # the array forms too: KEY+=VALUE appends, ~KEY removes
    arrays = json.loads(cli("show", "fast", 'callbacks+={plugin="csv_logger"}',
                            "~callbacks.lookahead", "~augmentation.0", "--no-model",
                            "--json").stdout)["recipe"]
    assert [c["plugin"] for c in arrays["callbacks"]] == ["warmup_decay", "csv_logger"]
    assert [a["plugin"] for a in arrays["augmentation"]] == ["random_translation"]


def test_overrides_go_anywhere_after_the_command_and_apply_in_the_order_typed(tmp_path):
    """KEY=VALUE words before, between and after options, mixed with --set, as Hydra
    users type them; a later one wins."""
    for args, epochs in ((["train.epochs=3", "--set", "train.epochs=5"], 5),
                         (["--set", "train.epochs=5", "train.epochs=3"], 3),
                         (["--no-model", "train.epochs=4", "~callbacks.early_stopping"], 4)):
        result = cli("show", "default", *args, *([] if "--no-model" in args else ["--no-model"]))
        assert result.returncode == 0, result.stderr
        assert f"\nepochs = {epochs}\n" in result.stdout, args
    shown = cli("show", "default", "--no-model", "--set", "train.epochs=4",
                "~callbacks.early_stopping").stdout
    assert 'plugin = "early_stopping"' not in shown and "\nepochs = 4\n" in shown
    bad = cli("show", "default", "--no-model", "--bogus")
    assert bad.returncode == 2 and "unrecognized arguments: --bogus" in bad.stderr


def test_show_takes_a_run_directory_for_its_recipe(tmp_path):
    run_dir = tmp_path / "r-20261208-000000"
    run_dir.mkdir()
    (run_dir / "recipe.toml").write_text('extends = "default"\nname = "mine"\n')
    result = cli("show", str(run_dir), "--no-model")
    assert result.returncode == 0, result.stderr
    assert 'name = "mine"' in result.stdout


def test_a_zoo_summary_keeps_its_citation_and_a_near_name_is_suggested(registry):
    from cifarkit.errors import did_you_mean

    assert registry.get("model", "resnet20").summary.endswith("16/32/64 filters.")
    assert did_you_mean("resnet18", registry.names("model")) == \
        "; did you mean 'preact_resnet18'?"


@pytest.mark.slow
def test_smoke_runs_the_whole_chain_and_overfit_batches_shows_the_loss_fall(tmp_path,
                                                                             cifar10_dir):
    from conftest import tiny_overrides

    sets = [a for o in tiny_overrides(cifar10_dir) for a in ("--set", o)]
    smoke = cli("run", "default", "--smoke", *sets, "-o", str(tmp_path / "smoke"))
    assert smoke.returncode == 0, smoke.stderr[-3000:]
    assert "smoke run passed" in smoke.stdout
    (run_dir,) = (tmp_path / "smoke").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "-smoke-" in run_dir.name and summary["epochs_run"] == 2
    assert summary["resumed"] and (run_dir / "model.keras").is_file()
    overfit = cli("run", "default", "--overfit-batches", "1", *sets, "-o",
                  str(tmp_path / "overfit"))
    assert "training loss on 1 batch(es)" in overfit.stdout, overfit.stderr[-3000:]
    (run_dir,) = (tmp_path / "overfit").iterdir()
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert len(rows) == 31 and "val_loss" not in rows[0]  # 30 epochs, no validation
    both = cli("run", "default", "--smoke", "--overfit-batches", "1", *sets)
    assert both.returncode == 2 and both.stderr.count("\n") == 1
