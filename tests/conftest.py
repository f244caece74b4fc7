import contextlib
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import tempfile

import pytest

# Hypothesis keeps caches (constants, charmaps) under .hypothesis/ in the working
# directory: outside the checkout instead, per test session.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY",
                      tempfile.mkdtemp(prefix="cifarkit-hypothesis-"))
from hypothesis import settings as hypothesis_settings  # noqa: E402

from cifarkit.core.registry import Registry
from cifarkit.testing import write_cifar10

# Hypothesis: the same examples on every run (a fresh clone's CI cannot fail by
# chance), and no example database written into the checkout (.hypothesis/).
# HYPOTHESIS_PROFILE=explore searches anew each run, still without a database.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
hypothesis_settings.register_profile("explore", derandomize=False, database=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The suite must not depend on other cifarkit plugins installed beside it: built-ins
# only, in this process and every subprocess, unless a test opts in explicitly.
os.environ["CIFARKIT_LOAD_PLUGINS"] = ""

# Importing jax sets TF_CPP_MIN_LOG_LEVEL=1 in its process when unset, and
# TensorFlow imports jax when it is installed (tf.lite does). Subprocesses
# started later would inherit it and show TensorFlow's warnings, which cifarkit
# hides only when the variable is unset: each test gets the session's value back.
_TF_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")


def _restore_tf_log_level() -> None:
    if _TF_LOG_LEVEL is None:
        os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
    else:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = _TF_LOG_LEVEL


@pytest.fixture(autouse=True)
def _tf_log_level_as_the_user_set_it():
    _restore_tf_log_level()  # also before: collecting a module that imports jax sets it
    yield
    _restore_tf_log_level()


ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RECIPE = ROOT / "recipes" / "default.toml"

# A seed_cnn small enough to train in a second on CPU.
TINY_MODEL = ["model.filters=[4, 8]", "model.dropout=[0.1, 0.1]", "model.dense_units=8"]


@pytest.fixture(scope="session")
def cifar10_dir(tmp_path_factory) -> Path:
    """A tiny cifar-10-batches-py folder (100 train, 40 test) in the real format."""
    return write_cifar10(tmp_path_factory.mktemp("data"), n_train=100, n_test=40)


def builtin_registry() -> Registry:
    """cifarkit's built-ins only, whatever else is installed in this environment (also
    for parametrizing over the built-in plugins at collection time)."""
    registry = Registry()
    registry.load_entrypoints(only="")
    return registry


@pytest.fixture(scope="session")
def registry():
    """cifarkit's built-ins only, whatever else is installed in this environment."""
    return builtin_registry()


@pytest.fixture
def write(tmp_path):
    """Write a text file under tmp_path and return its path."""
    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path
    return _write


TINY_RECIPE = """\
extends = "{default}"
name = "{name}"
[data]
path = "{data}"
batch_size = {batch_size}
[model]
filters = [4, 8]
dropout = [0.1, 0.1]
dense_units = 8
"""


def write_tiny_recipe(path: Path, data: Path, name: str, batch_size: int, rest: str = "") -> Path:
    """A recipe file: the default recipe with a tiny seed_cnn on ``data``, plus ``rest``
    (TOML); one epoch unless ``rest`` has a ``[train]`` table."""
    if "[train]" not in rest:
        rest += "\n[train]\nepochs = 1\n"
    path.write_text(TINY_RECIPE.format(default=DEFAULT_RECIPE, name=name, data=data,
                                       batch_size=batch_size) + rest)
    return path


def tiny_overrides(data_dir: Path, epochs: int = 1) -> list[str]:
    return [f"data.path={data_dir}", f"train.epochs={epochs}", "data.batch_size=16", *TINY_MODEL]


def cifarkit(*args: str, cwd: Path | None = None, env: dict | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed ``cifarkit`` command (as a user would) and capture its output."""
    full_env = {**os.environ, "COLUMNS": "120", **(env or {})}
    full_env.pop("FORCE_COLOR", None)
    return subprocess.run([sys.executable, "-m", "cifarkit", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``cifarkit ARGS`` run in this process (as :func:`cifarkit` runs it in a new one):
    exit status, stdout and stderr, with no interpreter or TensorFlow start-up. For tests
    whose subject is not a process boundary (signals, kills, another Keras backend,
    imports): Keras here runs on TensorFlow. A bug's traceback lands in stderr, exit 1."""
    from inprocess import cli as run_here

    return run_here(*args, env=env)


def cli_session(commands: list[tuple[list, dict | None]], env: dict | None = None,
                timeout: float = 600) -> list[subprocess.CompletedProcess]:
    """Several ``cifarkit`` commands, ``(args, env)`` each, in one new process (one
    interpreter and Keras start for all: a JAX session, say); an argument
    ``{only:FOLDER}`` is FOLDER's one entry when its command starts."""
    fd, path = tempfile.mkstemp(suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump([{"args": [str(a) for a in args], "env": e or {}} for args, e in commands], f)
    out = Path(path + ".out")
    try:
        done = subprocess.run([sys.executable, str(Path(__file__).with_name("inprocess.py")),
                               path], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "COLUMNS": "120", **(env or {})})
        assert done.returncode == 0, done.stderr[-3000:]
        results = json.loads(out.read_text())
    finally:
        os.unlink(path)
        out.unlink(missing_ok=True)
    return [subprocess.CompletedProcess(["cifarkit", *args], r["returncode"], r["stdout"],
                                        r["stderr"])
            for (args, _), r in zip(commands, results)]


def commands_on(backend: str, commands: list[tuple[list, dict | None]],
                env: dict | None = None) -> list:
    """Each ``(args, env)`` command's outcome: TensorFlow's in this process, JAX's
    together in one new process with ``env`` (Keras picks its backend once per
    process); an argument's ``{only:FOLDER}`` is FOLDER's one entry when its command
    starts."""
    if backend == "tensorflow":
        from inprocess import _resolve

        return [cli(*[_resolve(str(a)) for a in args], env=e) for args, e in commands]
    return cli_session(commands, env=env)


def pytest_collection_modifyitems(items):
    """A test that uses the session's trained run trains (once per worker): slow lane.
    The slow tests run first (in their files' order), so the workers share out the long
    ones early and the suite does not end waiting on one long test."""
    for item in items:
        if {"trained_run", "run_copy"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, cifar10_dir) -> Path:
    """One finished tiny run (TensorFlow, one epoch) per test session and worker, trained
    in this process. Read it through ``run_copy``; never change it in place."""
    out = tmp_path_factory.mktemp("trained")
    sets = [*tiny_overrides(cifar10_dir), "strategy.plugin=one_device"]
    done = cli("run", "default", *[a for s in sets for a in ("--set", s)], "--output", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = out.iterdir()
    return run_dir


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    """A copy of the session's trained run in this test's folder, to change at will."""
    import shutil

    copy = tmp_path / "runs" / trained_run.name
    shutil.copytree(trained_run, copy, symlinks=True)
    return copy


# -- long runs in a subprocess: start, interrupt, read back -------------------

SLOW_EPOCHS = """\
[strategy]
plugin = "one_device"
[train]
epochs = {epochs}
steps_per_epoch = {steps}
[[callbacks]]
plugin = "early_stopping"
patience = 10
restore_best_weights = true
[[callbacks]]
plugin = "reduce_lr_on_plateau"
patience = 0
factor = 0.5
min_delta = 100.0
"""


def write_slow_recipe(tmp_path, data, name="r", epochs=4, steps=4):
    return write_tiny_recipe(tmp_path / f"{name}.toml", data, name, 16,
                             SLOW_EPOCHS.format(epochs=epochs, steps=steps))


def start(*args, cwd=None, env=None):
    env = {**os.environ, "COLUMNS": "120", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "cifarkit", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextlib.contextmanager
def running(*args, env=None):
    """A ``cifarkit`` process that is always killed and reaped, even when the test fails."""
    proc = start(*args, env=env)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def wait_for_rows(runs: Path, n: int, proc, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for f in runs.glob("*/metrics.csv"):
            if len(f.read_text().splitlines()) - 1 >= n:
                return f.parent
        if proc.poll() is not None:
            pytest.fail(f"run ended early: {proc.stderr.read()[-2000:]}")
        time.sleep(0.02)
    pytest.fail("timed out waiting for epochs")


# -- deterministic stop points: tests/stop_at.py acts at a given step ----------

STOP_AT = Path(__file__).resolve().with_name("stop_at.py")


def stop_at(epoch: int, step: int, action: str, marker: Path | None = None) -> tuple[list, dict]:
    """``(arguments, environment)`` for a ``cifarkit run`` that does ``action`` (kill, int,
    term, int2, term2, hold) at the end of ``step`` of ``epoch`` (tests/stop_at.py)."""
    env = {"CIFARKIT_TEST_STOP_AT": f"{epoch}:{step}:{action}"}
    if marker is not None:
        env["CIFARKIT_TEST_STOP_FILE"] = str(marker)
    return ["--plugin", str(STOP_AT)], env


def wait_for_file(path: Path, proc, timeout=240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"run ended early: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {path}")
        time.sleep(0.02)


def stopped_run(tmp_path: Path, recipe: Path, epoch: int, step: int, action: str, *args: str,
                runs: Path | None = None, env: dict | None = None, run=None):
    """``(finished process, run directory)`` of ``recipe`` run until ``action`` at
    ``(epoch, step)``; ``run=cli`` runs it in this process (signals only, never "kill")."""
    runs = runs or tmp_path / "runs"
    extra, stop_env = stop_at(epoch, step, action)
    done = (run or cifarkit)("run", str(recipe), "--output", str(runs), *extra, *args,
                             env={**(env or {}), **stop_env})
    (run_dir,) = runs.iterdir()
    return done, run_dir


def metrics(run_dir):
    return list(csv.DictReader((run_dir / "metrics.csv").open()))


def assert_same_epochs(expected_dir, run_dir, epochs: int, rel: float) -> None:
    """``run_dir`` has ``epochs`` rows with the training and validation figures of
    ``expected_dir``'s (to ``rel``)."""
    expected, got = metrics(expected_dir), metrics(run_dir)
    assert [r["epoch"] for r in got] == [str(e) for e in range(1, epochs + 1)]
    for want, row in zip(expected, got):
        for key in ("accuracy", "loss", "val_accuracy", "val_loss", "learning_rate"):
            assert float(row[key]) == pytest.approx(float(want[key]), rel=rel), (row["epoch"], key)


def summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture
def small_fs(tmp_path):
    """``make(size)``: a real tmpfs of ``size`` (e.g. "2m") mounted under tmp_path, and
    ``resize(size)`` / ``read_only()`` for it; skipped where mounting is not allowed."""
    mounts = []

    class SmallFs:
        def make(self, size: str) -> Path:
            path = tmp_path / f"fs{len(mounts)}"
            path.mkdir()
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                  capture_output=True)
            if done.returncode != 0:
                pytest.skip("cannot mount a small file system here (needs root)")
            mounts.append(path)
            return path

        def remount(self, path: Path, options: str) -> None:
            subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)

    yield SmallFs()
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def write_plugin(path: Path, hook: str, factory: str) -> Path:
    """A local plugin file: ``factory`` (one function's source) registered through ``hook``."""
    name = re.match(r"def (\w+)", factory.strip()).group(1)
    path.write_text(f"import cifarkit\n\n\n{factory.strip()}\n\n\n@cifarkit.hookimpl\n"
                    f"def {hook}(register):\n    register({name})\n")
    return path


@contextlib.contextmanager
def held(tmp_path: Path, epoch: int, step: int, *args: str):
    """``cifarkit ARGS`` (a run, or a sweep whose trial trains) held alive at the end of
    ``step`` of ``epoch`` (tests/stop_at.py): yields the process once the training process
    holds there (its pid in ``tmp_path / "holding"``); always reaped. A signal releases it."""
    marker = tmp_path / "holding"
    extra, env = stop_at(epoch, step, "hold", marker)
    with running(*args, *extra, env=env) as proc:
        wait_for_file(marker, proc)
        yield proc


@contextlib.contextmanager
def slow_run(tmp_path: Path, data: Path, rows: int, epochs: int = 3, steps: int = 4, *args: str):
    """``(process, run directory)`` of a slow recipe's run held (alive, mid-training) just
    after ``rows`` completed epochs; the process is always reaped. A signal releases it."""
    runs = tmp_path / "runs"
    recipe = write_slow_recipe(tmp_path, data, epochs=epochs, steps=steps)
    with held(tmp_path, rows + 1, 1, "run", str(recipe), "--output", str(runs), *args) as proc:
        (run_dir,) = runs.iterdir()
        yield proc, run_dir


def interrupted_run(tmp_path: Path, data: Path, rows: int, epochs: int = 4, steps: int = 4) -> Path:
    """The run directory of a slow recipe's run stopped by Ctrl-C in the middle of epoch
    ``rows + 1``, in this process (for tests of what a resume does, not of the stop)."""
    done, run_dir = stopped_run(tmp_path, write_slow_recipe(tmp_path, data, epochs=epochs,
                                                            steps=steps),
                                rows + 1, min(2, steps), "int", run=cli)
    assert done.returncode == 130, done.stderr[-2000:]
    return run_dir


def killed_run(tmp_path: Path, data: Path, rows: int, epochs: int = 4, steps: int = 4) -> Path:
    """The run directory of a slow recipe's run killed (-9) in the middle of epoch ``rows + 1``."""
    done, run_dir = stopped_run(tmp_path, write_slow_recipe(tmp_path, data, epochs=epochs,
                                                            steps=steps),
                                rows + 1, min(2, steps), "kill")
    assert done.returncode == -9, done.stderr[-2000:]
    return run_dir
