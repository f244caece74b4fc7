"""The run directory: one per run however runs are started, atomic writes."""

import os
import threading

import pytest

from cifarkit.runs import artifacts
from conftest import start, summary, write_slow_recipe


def test_concurrent_runs_get_their_own_directories(tmp_path):
    made, barrier = [], threading.Barrier(8)

    def create():
        barrier.wait()
        made.append(artifacts.create_run_dir(tmp_path, "same"))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 8 and all(p.is_dir() for p in made)


@pytest.mark.slow
def test_two_processes_into_one_output(tmp_path, cifar10_dir):
    recipe = write_slow_recipe(tmp_path, cifar10_dir, name="twin", epochs=1, steps=5)
    procs = [start("run", str(recipe), "--output", str(tmp_path / "runs")) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    dirs = list((tmp_path / "runs").iterdir())
    assert len(dirs) == 2
    for d in dirs:
        assert summary(d)["status"] == "completed" and summary(d)["run_dir"] == str(d)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    artifacts.atomic_write(target, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        artifacts.atomic_write(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_plots_are_titled_and_the_normalised_matrix_divides_each_row(tmp_path, monkeypatch):
    from cifarkit.runs import plots

    drawn = {}

    def keep(fig, path):  # what each figure says, instead of its pixels
        ax = fig.axes[0]
        drawn[path.name] = (ax.get_title(), [t.get_text() for t in ax.texts],
                            [line.get_label() for line in ax.lines])

    monkeypatch.setattr(plots, "save_png", keep)
    rows = [{"epoch": e, "accuracy": 0.2 * e, "val_accuracy": 0.1 * e, "loss": 1 / e,
             "val_loss": 1.2 / e, "learning_rate": 0.1 / e} for e in (1, 2)]
    title = "r-1, test accuracy 48.00 %"
    plots.plot_curves(rows, tmp_path, 2, best_by="val_loss", title=title)
    plots.plot_confusion([[3, 1], [0, 0]], ["cat", "dog"], tmp_path / "confusion_matrix.png",
                         title)
    assert sorted(drawn) == ["accuracy.png", "confusion_matrix.png",
                             "confusion_matrix_normalized.png", "learning_rate.png", "loss.png"]
    assert drawn["learning_rate.png"][0] == f"{title}\nlearning rate per epoch"
    assert drawn["learning_rate.png"][2][0] == "learning rate"  # one curve, no validation
    assert drawn["accuracy.png"][0].startswith(title)
    assert drawn["confusion_matrix.png"][1] == ["3", "1", "0", "0"]
    # each true class's row divided by its total; a class with no images stays 0
    assert drawn["confusion_matrix_normalized.png"][1] == [".75", ".25", "0", "0"]
    assert drawn["confusion_matrix_normalized.png"][0] == \
        f"{title}\nconfusion matrix, each row divided by its total"
