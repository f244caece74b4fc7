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
