"""``cifarkit sweep RECIPE --grid KEY=V1,V2 ...``: one ordinary run per combination of
the grid's values, in one sweep folder, and a table of the trials at the end.

Every trial's recipe is checked before the first trial starts (a bad value is
one line, and nothing is written). Each trial runs as ``cifarkit run`` in a
process of its own, named ``<recipe>-t<N>`` so its run directory says which
trial it is; ``sweep.json`` in the sweep folder lists the trials. Ctrl-C stops
after the current trial (a second one stops the trial too, which then resumes
like any run); ``cifarkit sweep --resume SWEEP_DIR`` continues: finished
trials are kept, an interrupted one resumes, the rest start.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit
from pathlib import Path
from typing import Any

from cifarkit.errors import CifarkitError, OutputError, RecipeError, masked_url

SWEEP_FILE = "sweep.json"


def split_values(text: str) -> list[str]:
    """``V1,V2,...`` split at the commas outside brackets and quotes (a value may be a
    TOML array such as ``[32, 64]``)."""
    values, depth, quote, current = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            values.append(current.strip())
            current = ""
            continue
        current += ch
    values.append(current.strip())
    return values


def parse_grid(grid: list[str]) -> dict[str, list[str]]:
    """``--grid KEY=V1,V2`` options as key -> values (as ``--set`` would read each)."""
    out: dict[str, list[str]] = {}
    for item in grid:
        key, sep, values = item.partition("=")
        key = key.strip()
        parts = split_values(values) if sep else []
        if not key or not parts or any(not p for p in parts):
            raise RecipeError(f"--grid {item}: expected KEY=VALUE,VALUE,... (e.g. "
                              "--grid train.learning_rate=0.01,0.1)")
        if key in out:
            raise RecipeError(f"--grid {item}: {key} is already in the grid; give its values once")
        out[key] = parts
    if not out:
        raise RecipeError("sweep: give at least one --grid KEY=VALUE,VALUE,...")
    return out


def trials(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination of the grid's values, the last key varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def plan(recipe_path: Path, base: list[str], grid: dict[str, list[str]], registry,
         name: str) -> list[dict[str, Any]]:
    """The trials, each checked as ``cifarkit run`` would check it (first error: one line)."""
    from cifarkit.core.recipe import load_recipe

    planned = []
    for i, values in enumerate(trials(grid), start=1):
        overrides = [*base, *(f"{k}={v}" for k, v in values.items()), f"name={name}-t{i:02d}"]
        load_recipe(recipe_path, overrides, registry)
        planned.append({"trial": i, "name": f"{name}-t{i:02d}", "values": values,
                        "overrides": overrides, "run_dir": None})
    return planned


def write_state(folder: Path, state: dict[str, Any]) -> None:
    """sweep.json, and its signature (this user's key): a later ``sweep --resume`` runs
    what it names only when this user's cifarkit wrote it (or with --trust-run)."""
    from cifarkit.runs.artifacts import atomic_write, json_text
    from cifarkit.runs.trust import SIGNATURE_NAME, sweep_signature

    text = json_text(state)
    atomic_write(folder / SWEEP_FILE, text)
    atomic_write(folder / SIGNATURE_NAME, sweep_signature(text) + "\n")


def check_trusted(folder: Path, trust_run: bool) -> None:
    """Refuse (one line) to resume a sweep folder this user's cifarkit did not write,
    unless the user vouches for it: its sweep.json names a recipe, overrides (plugin
    files among them) and a storage URL that a resume would read and run."""
    from cifarkit.runs.folder import read_text
    from cifarkit.runs.trust import is_own_sweep

    path = folder / SWEEP_FILE
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise OutputError(f"{folder}: not a sweep folder (no {SWEEP_FILE})") from None
    if not trust_run and not is_own_sweep(folder, text):
        raise OutputError(f"{path}: this sweep folder was not made by your cifarkit (or its "
                          "sweep.json was edited since), and resuming it would run the recipe, "
                          "overrides and plugin files it names; pass --trust-run if you trust it")


def trial_dir(folder: Path, trial: dict[str, Any]) -> Path | None:
    """A trial's run directory: a plain folder name inside the sweep folder, else none."""
    name = trial.get("run_dir")
    if not isinstance(name, str) or not name or Path(name).name != name or name.startswith("."):
        return None
    return folder / name


def read_state(folder: Path) -> dict[str, Any]:
    from cifarkit.runs.folder import read_json

    path = folder / SWEEP_FILE
    try:
        state = read_json(path)
    except FileNotFoundError:
        raise OutputError(f"{folder}: not a sweep folder (no {SWEEP_FILE})") from None
    if not isinstance(state, dict) or not isinstance(state.get("trials"), list):
        raise OutputError(f"{path}: not a cifarkit sweep file")
    return state


class StopAfterTrial:
    """First Ctrl-C (or SIGTERM): finish the current trial, then stop. Second: pass it on
    to the trial, which stops after its current step and can be resumed."""

    def __init__(self) -> None:
        self.requested = False
        self.child: subprocess.Popen | None = None

    def __enter__(self):
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        if self.requested and self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGINT)
        if not self.requested:
            print("cifarkit: stopping after the current trial (Ctrl-C again stops it now)",
                  file=sys.stderr, flush=True)
        self.requested = True

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)


def child_args(plugin_files: tuple, trust_run: bool = False) -> list[str]:
    """What every trial's ``cifarkit run`` is given besides its recipe: the sweep's plugin
    files, and ``--trust-run`` when the user vouched for a sweep folder from elsewhere."""
    return [*(a for p in plugin_files for a in ("--plugin", p)),
            *(["--trust-run"] if trust_run else [])]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    """A trial gets SIGTERM when its sweep dies, however it dies (Linux's parent-death
    signal): it stops after its current step, resumable, instead of training on alone."""
    os.setsid()  # its own session: a Ctrl-C reaches the sweep, which decides
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start_trial(args: list[str]) -> subprocess.Popen:
    """One trial's ``cifarkit run``, with the interpreter this sweep runs in and never the
    working folder on its import path (``-P``: a ``cifarkit/`` folder there is not imported).
    Its output goes where this process's ``print`` goes (stderr under ``--json``)."""
    try:
        stdout = sys.stdout.fileno()
    except (OSError, ValueError, AttributeError):  # a StringIO, say: inherit fd 1
        stdout = None
    return subprocess.Popen([sys.executable, "-P", "-m", "cifarkit", *args],
                            preexec_fn=_die_with_parent, stdout=stdout)


def await_run_dir(folder: Path, name: str, before: set[str],
                  child: subprocess.Popen) -> Path | None:
    """The run directory a just-started trial creates (``name``-timestamp, not one of
    ``before``), once it exists; None if the trial ends first."""
    while True:
        made = sorted(p for p in folder.glob(f"{name}-*") if p.name not in before)
        if made:
            return made[-1]
        if child.poll() is not None:
            return None
        time.sleep(0.1)


def run_trials(folder: Path, state: dict[str, Any], recipe_file: str, child: list[str],
               stop: StopAfterTrial) -> None:
    """Run (or resume) every trial not yet finished, one process each, in order."""
    from cifarkit.runs.artifacts import read_summary

    for trial in state["trials"]:
        if stop.requested:
            return
        run_dir = trial_dir(folder, trial)
        status = None
        if run_dir is not None:
            try:
                status = read_summary(run_dir).get("status")
            except CifarkitError:
                status = None
        if status in ("completed", "failed"):
            continue
        if run_dir is not None and run_dir.is_dir():  # started: continue it, never a second
            args = ["run", "--resume", str(run_dir), *child]
        else:
            args = ["run", recipe_file, *(a for o in trial["overrides"] for a in ("--set", o)),
                    "-o", str(folder), *child]
        print(f"── trial {trial['trial']} of {len(state['trials'])}: "
              + ", ".join(f"{k}={v}" for k, v in trial["values"].items()), flush=True)
        before = {p.name for p in folder.glob(f"{trial['name']}-*")}
        stop.child = start_trial(args)
        if trial.get("run_dir") is None:  # recorded as soon as the trial makes it
            made = await_run_dir(folder, trial["name"], before, stop.child)
            if made is not None:
                trial["run_dir"] = made.name
                write_state(folder, state)
        stop.child.wait()
        if trial.get("run_dir") is None:
            made = sorted(folder.glob(f"{trial['name']}-*"), key=lambda p: p.stat().st_mtime)
            trial["run_dir"] = made[-1].name if made else None
            write_state(folder, state)


def rows(folder: Path, state: dict[str, Any]) -> list[dict[str, Any]]:
    """Each trial's values and outcome (see :func:`cifarkit.cli.history.describe`)."""
    from cifarkit.cli.history import describe

    out = []
    for trial in state["trials"]:
        run_dir = trial_dir(folder, trial)
        row = (describe(run_dir) if run_dir is not None
               else {"name": trial["name"], "status": "not started"})
        if trial.get("status") == "pruned":  # stopped by Optuna, not by a person
            row["status"] = "pruned"
        out.append({**row, "trial": trial["trial"], **trial["values"]})
    return out


def best(trial_rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The completed trial with the best validation accuracy (the test split only
    reports)."""
    scored = [r for r in trial_rows
              if r.get("best_val_accuracy") is not None and r.get("status") == "completed"]
    return max(scored, key=lambda r: r["best_val_accuracy"]) if scored else None


def finished(state: dict[str, Any], trial_rows: list[dict[str, Any]]) -> bool:
    """Whether nothing is left to run: every grid trial done, or a study that holds all
    its trials (from every worker)."""
    if state.get("mode") == "search":
        return len(open_study(state).get_trials(deepcopy=False)) >= state["trials_wanted"]
    return all(r.get("status") in ("completed", "failed") for r in trial_rows)


def study_best(state: dict[str, Any]) -> dict[str, Any] | None:
    """The study's best trial, over every worker sharing its storage."""
    study = open_study(state)
    try:
        trial = study.best_trial
    except ValueError:  # no completed trial
        return None
    return {"trial": trial.number + 1, "value": trial.value, "params": trial.params,
            "run_dir": trial.user_attrs.get("run_dir")}


def new_folder(output: Path, name: str) -> Path:
    from cifarkit.runs.artifacts import check_output, create_run_dir

    check_output(output)
    return create_run_dir(output, f"{name}-sweep")


def started_at() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# -- search with Optuna ------------------------------------------------------------------
PARAM_KEYS = {"float": {"type", "low", "high", "log", "step"},
              "int": {"type", "low", "high", "log", "step"},
              "categorical": {"type", "choices"}}


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise CifarkitError("sweep --trials needs Optuna: pip install -e \".[sweep]\"") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def space(recipe, registry) -> dict[str, dict[str, Any]]:
    """``[sweep.params]``, checked: each range's form, and each of its ends (or choices)
    as a value ``cifarkit run`` accepts for its key."""
    from cifarkit.core.recipe import load_recipe

    params = recipe.sweep.params
    where = f"{recipe.path}: sweep.params"
    if not isinstance(params, dict) or not params:
        raise RecipeError(f"{where}: give at least one key to search, e.g. "
                          '"train.learning_rate" = { type = "float", low = 1e-4, high = 0.1, '
                          "log = true }")
    for key, spec in params.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind not in PARAM_KEYS:
            raise RecipeError(f"{where}.{key}: expected a table with type = \"float\", \"int\" "
                              "or \"categorical\"")
        extra = set(spec) - PARAM_KEYS[kind]
        if extra:
            raise RecipeError(f"{where}.{key}: unknown key {sorted(extra)[0]!r} for type "
                              f"{kind!r} (allowed: {', '.join(sorted(PARAM_KEYS[kind]))})")
        ends = spec.get("choices") if kind == "categorical" else [spec.get("low"), spec.get("high")]
        if not isinstance(ends, list) or not ends or any(v is None for v in ends):
            raise RecipeError(f"{where}.{key}: " + ("choices must be a non-empty array"
                              if kind == "categorical" else "needs low and high"))
        if kind != "categorical" and not ends[0] < ends[1]:
            raise RecipeError(f"{where}.{key}: low must be below high")
        for value in ends:
            load_recipe(recipe.path, [*recipe.overrides, f"{key}={_toml(value)}"], registry)
    return params


def _toml(value: Any) -> str:
    import tomli_w

    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def suggest(trial, key: str, spec: dict[str, Any]) -> Any:
    kind = spec["type"]
    if kind == "categorical":
        return trial.suggest_categorical(key, spec["choices"])
    suggest_fn = trial.suggest_float if kind == "float" else trial.suggest_int
    return suggest_fn(key, spec["low"], spec["high"], log=bool(spec.get("log", False)),
                      **({"step": spec["step"]} if "step" in spec else {}))


#: Storage URLs with their passwords, by their masked form (kept in memory only).
_SECRETS: dict[str, str] = {}


def remember_storage(url: str) -> str:
    """The masked form of ``url``, remembering the whole URL for this process."""
    masked = masked_url(url)
    _SECRETS[masked] = url
    return masked


def open_study(state: dict[str, Any]):
    optuna = import_optuna()
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
              if state["pruner"] == "median" else optuna.pruners.NopPruner())
    for attempt in range(5):  # workers started together race to create the storage's tables
        try:
            return optuna.create_study(
                study_name=state["study"], storage=_SECRETS.get(state["storage"], state["storage"]),
                load_if_exists=True,
                direction=state["direction"], pruner=pruner,
                sampler=optuna.samplers.TPESampler(seed=state["seed"]))
        except Exception as exc:  # a storage URL it cannot open, a study of another direction
            error = exc
            time.sleep(0.5 * (attempt + 1))
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    password = urlsplit(_SECRETS.get(state["storage"], "")).password
    if password:  # a driver's message may quote the URL or the password itself
        reason = reason.replace(password, "***")
    raise CifarkitError(f"sweep: Optuna storage {state['storage']}: {reason}")


def search(folder: Path, state: dict[str, Any], child: list[str],
           stop: StopAfterTrial) -> None:
    """Ask the study for trials until it holds ``state["trials"]`` of them (from every
    worker sharing its storage), run each as a process of its own, report its
    per-epoch metric as it goes (Optuna may prune it: it is stopped after its
    current step) and tell the study its best value."""
    optuna = import_optuna()
    study = open_study(state)
    States = optuna.trial.TrialState
    for trial in state["trials"]:  # left RUNNING when this folder's sweep died
        frozen = study.trials[trial["optuna"]] if trial["optuna"] < len(study.trials) else None
        if frozen is None or frozen.state != States.RUNNING:
            continue
        run_dir = trial_dir(folder, trial)
        if run_dir is not None and run_dir.is_dir() and not stop.requested:
            # continue its run (the folder's lock says no other process has it), reporting
            # to the same Optuna trial, instead of starting another beside it
            asked = optuna.trial.Trial(study, frozen._trial_id)
            trial["status"] = _run_reported(folder, trial, state, child, stop, study, asked,
                                            ["run", "--resume", str(run_dir), *child])
        else:
            study.tell(trial["optuna"], state=States.FAIL)
            trial["status"] = "failed"
        write_state(folder, state)
    while not stop.requested:
        if len(study.get_trials(deepcopy=False)) >= state["trials_wanted"]:
            return
        asked = study.ask()
        values = {k: suggest(asked, k, spec) for k, spec in state["space"].items()}
        name = f"{state['recipe_name']}-t{asked.number + 1:02d}"
        record = {"trial": asked.number + 1, "optuna": asked.number, "name": name,
                  "values": values, "run_dir": None, "status": "running",
                  "overrides": [*state["set"], *(f"{k}={_toml(v)}" for k, v in values.items()),
                                f"name={name}"]}
        state["trials"].append(record)
        write_state(folder, state)
        outcome = _run_reported(folder, record, state, child, stop, study, asked)
        record["status"] = outcome
        write_state(folder, state)


def _run_reported(folder, record, state, child_extra, stop, study, asked,
                  args: list[str] | None = None) -> str:
    """One trial's process (``args``: a new run, or a resume), its metric reported to
    Optuna each epoch; the outcome."""
    import warnings

    optuna = import_optuna()
    States = optuna.trial.TrialState
    warnings.filterwarnings("ignore", message=".*already reported.*")  # a resumed trial's
    args = args or ["run", state["recipe"],
                    *(a for o in record["overrides"] for a in ("--set", o)),
                    "-o", str(folder), *child_extra]
    print(f"── trial {record['trial']}: "
          + ", ".join(f"{k}={v}" for k, v in record["values"].items()), flush=True)
    stop.child = child = start_trial(args)
    reported, pruned = 0, False
    while True:
        ended = child.poll() is not None
        known = record.get("run_dir") is not None
        run_dir = _trial_dir(folder, record)
        if run_dir is not None and not known:  # recorded as soon as the trial makes it
            write_state(folder, state)
        rows = _metric_rows(run_dir, state["metric"]) if run_dir else []
        for epoch, value in rows[reported:]:
            asked.report(value, epoch)
            reported += 1
            if not pruned and asked.should_prune():
                pruned = True
                child.send_signal(signal.SIGINT)
        if ended:
            break
        time.sleep(0.5)
    from cifarkit.runs.artifacts import read_summary

    values = [v for _, v in rows]
    asked.set_user_attr("run_dir", str(run_dir) if run_dir else None)
    status = read_summary(run_dir).get("status") if run_dir else "failed"
    if pruned and status != "completed":  # (one that finished before the signal counts)
        study.tell(asked, state=States.PRUNED)
        return "pruned"
    if status != "completed" or not values:
        study.tell(asked, state=States.FAIL)
        return status or "failed"
    study.tell(asked, max(values) if state["direction"] == "maximize" else min(values))
    return "completed"


def _trial_dir(folder: Path, record: dict[str, Any]) -> Path | None:
    if record.get("run_dir") is None:
        made = sorted(folder.glob(f"{record['name']}-*"))
        if not made:
            return None
        record["run_dir"] = made[-1].name
    return folder / record["run_dir"]


def _metric_rows(run_dir: Path, metric: str) -> list[tuple[int, float]]:
    from cifarkit.cli.history import read_metrics

    return [(int(r["epoch"]), r[metric]) for r in read_metrics(run_dir)
            if r.get(metric) is not None and r.get("epoch") is not None]
