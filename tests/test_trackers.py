"""The mlflow callback: what it logs, read back through MLflow's own client."""

import csv
import importlib.util
import os

import pytest

from conftest import ROOT, cifarkit, summary, write_tiny_recipe

MLFLOW = """
[[callbacks]]
plugin = "mlflow"
experiment = "tiny"
"""


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="the mlflow extra")
def test_the_mlflow_callback_logs_recipe_metrics_and_files(tmp_path, cifar10_dir):
    from mlflow.tracking import MlflowClient

    recipe = write_tiny_recipe(tmp_path / "m.toml", cifar10_dir, "m", 16, MLFLOW)
    runs = tmp_path / "runs"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = cifarkit("run", str(recipe), "--backend", "jax", "--set", "train.epochs=2",
                    "-o", str(runs), env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir() and p.name.startswith("m-")]
    client = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")  # beside the run directory
    (logged,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert logged.info.status == "FINISHED" and logged.info.run_name == run_dir.name
    assert logged.data.params["train.epochs"] == "2"
    assert logged.data.params["model.plugin"] == "seed_cnn"
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    history = client.get_metric_history(logged.info.run_id, "val_accuracy")
    assert [(m.step, m.value) for m in history] == [
        (int(r["epoch"]), pytest.approx(float(r["val_accuracy"]))) for r in rows]
    assert logged.data.metrics["test_accuracy"] == pytest.approx(
        summary(run_dir)["test_accuracy"])
    files = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"model.keras", "accuracy.png", "loss.png", "recipe.toml", "summary.json"} <= files
    assert (runs / "mlartifacts").is_dir()
    rates = client.get_metric_history(logged.info.run_id, "learning_rate")
    assert [m.value for m in rates] == pytest.approx([float(r["learning_rate"]) for r in rows])
    assert f"mlflow: logs to sqlite:///{runs / 'mlflow.db'}, experiment 'tiny'" in done.stdout


def test_a_missing_mlflow_is_one_line_naming_the_extra(tmp_path, cifar10_dir):
    recipe = write_tiny_recipe(tmp_path / "m.toml", cifar10_dir, "m", 16, MLFLOW)
    blocked = cifarkit("run", str(recipe), "-o", str(tmp_path / "runs"),
                       env={"PYTHONPATH": str(ROOT / "tests" / "no_tensorflow"),
                            "CIFARKIT_BLOCK_ALSO": "mlflow", "KERAS_BACKEND": "jax"})
    assert blocked.returncode == 2 and blocked.stderr.count("\n") == 1, blocked.stderr
    assert 'pip install -e ".[mlflow]"' in blocked.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                                  reason="the mlflow extra")


@needs_mlflow
@pytest.mark.parametrize("uri, fragment", [
    ("http://127.0.0.1:9", "the tracking server http://127.0.0.1:9 cannot be reached"),
    ("http://bob:s3cret@127.0.0.1:9", "http://bob:***@127.0.0.1:9 cannot be reached"),
    ("sqlite:///{tmp}/not-a-db", "not-a-db is not an SQLite database")])
def test_an_unusable_tracking_store_is_one_line_before_training(tmp_path, cifar10_dir, uri,
                                                                fragment):
    import time

    from conftest import cli

    (tmp_path / "not-a-db").write_text("just text\n")
    recipe = write_tiny_recipe(tmp_path / "m.toml", cifar10_dir, "m", 16, MLFLOW)
    started = time.monotonic()
    done = cli("run", str(recipe), "-o", str(tmp_path / "runs"),
               env={"MLFLOW_TRACKING_URI": uri.format(tmp=tmp_path)})
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr[-3000:]
    assert fragment in done.stderr and "s3cret" not in done.stderr
    assert time.monotonic() - started < 20
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.slow  # trains
@needs_mlflow
def test_a_tracker_failing_at_the_end_fails_the_outcome_and_its_mlflow_run(
        tmp_path, cifar10_dir, monkeypatch):
    from mlflow.tracking import MlflowClient

    from conftest import cli

    def broken(self, *args, **kwargs):
        raise OSError("the artifact store is full")

    monkeypatch.setattr(MlflowClient, "log_artifact", broken)
    recipe = write_tiny_recipe(tmp_path / "m.toml", cifar10_dir, "m", 16, MLFLOW)
    runs = tmp_path / "runs"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    done = cli("run", str(recipe), "--set", "strategy.plugin=one_device", "-o", str(runs))
    assert done.returncode == 1, done.stderr[-3000:]
    assert "the artifact store is full" in done.stderr
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir() and p.name.startswith("m-")]
    s = summary(run_dir)
    assert s["status"] == "completed"  # trained and evaluated; the record elsewhere failed
    assert "mlflow: logging the run's results" in s["finish_errors"][0]
    client = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    (logged,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert logged.info.status == "FAILED"
