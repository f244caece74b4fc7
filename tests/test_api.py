"""The Python API (cifarkit.api): docs/api.md's example runs as written, and the
functions fail as the commands do."""

import os
import re

import pytest

import cifarkit
from conftest import ROOT


@pytest.mark.slow  # trains two epochs
def test_the_documented_example_runs(tmp_path, cifar10_dir, monkeypatch):
    (code,) = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), re.S)
    code = code.replace('DATA = "/data/cifar-10-batches-py"', f'DATA = "{cifar10_dir}"')
    code = code.replace('"data.limit=2048",', '"data.limit=2048", "model.widths=[8, 16, 16]",')
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/api.md", "exec"), {})
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert cifarkit.load_run(run_dir).summary["epochs_run"] == 2
    log = (run_dir / "run.log").read_text()  # a run from Python keeps its log too
    assert "recipe: fast" in log and "completed: test accuracy" in log


def test_bad_input_is_the_commands_one_line(tmp_path):
    with pytest.raises(cifarkit.CifarkitError, match="recipe file not found"):
        cifarkit.train(tmp_path / "missing.toml")
    with pytest.raises(cifarkit.CifarkitError, match="takes no RECIPE"):
        cifarkit.train("default", resume=tmp_path)
    with pytest.raises(cifarkit.CifarkitError):
        cifarkit.load_run(tmp_path)
    assert not os.listdir(tmp_path)
    assert {p["kind"] for p in cifarkit.list_plugins()} >= {"model", "augmentation"}
    assert [p["name"] for p in cifarkit.list_plugins(kind="model")] == sorted(
        p["name"] for p in cifarkit.list_plugins(kind="model"))
