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
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cifarkit.errors import CifarkitError, OutputError, RecipeError

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
    from cifarkit.runs.artifacts import write_json

    write_json(folder / SWEEP_FILE, state)


def read_state(folder: Path) -> dict[str, Any]:
    path = folder / SWEEP_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OutputError(f"{folder}: not a sweep folder (no {SWEEP_FILE})") from None
    except (OSError, ValueError) as exc:
        raise OutputError(f"{path}: unreadable ({exc})") from None
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


def run_trials(folder: Path, state: dict[str, Any], recipe_file: str, plugin_files: tuple,
               stop: StopAfterTrial) -> None:
    """Run (or resume) every trial not yet finished, one process each, in order."""
    from cifarkit.runs.artifacts import read_summary

    for trial in state["trials"]:
        if stop.requested:
            return
        run_dir = folder / trial["run_dir"] if trial.get("run_dir") else None
        status = None
        if run_dir is not None:
            try:
                status = read_summary(run_dir).get("status")
            except CifarkitError:
                status = None
        if status in ("completed", "failed"):
            continue
        plugins = [a for p in plugin_files for a in ("--plugin", p)]
        if run_dir is not None and status in ("interrupted", "crashed", "running"):
            args = ["run", "--resume", str(run_dir), *plugins]
        else:
            args = ["run", recipe_file, *(a for o in trial["overrides"] for a in ("--set", o)),
                    "-o", str(folder), *plugins]
        print(f"── trial {trial['trial']} of {len(state['trials'])}: "
              + ", ".join(f"{k}={v}" for k, v in trial["values"].items()), flush=True)
        stop.child = subprocess.Popen([sys.executable, "-m", "cifarkit", *args],
                                      start_new_session=True)
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
        row = (describe(folder / trial["run_dir"]) if trial.get("run_dir")
               else {"name": trial["name"], "status": "not started"})
        out.append({**row, "trial": trial["trial"], **trial["values"]})
    return out


def best(trial_rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The trial with the best validation accuracy (the test split only reports)."""
    scored = [r for r in trial_rows if r.get("best_val_accuracy") is not None]
    return max(scored, key=lambda r: r["best_val_accuracy"]) if scored else None


def new_folder(output: Path, name: str) -> Path:
    from cifarkit.runs.artifacts import check_output, create_run_dir

    check_output(output)
    return create_run_dir(output, f"{name}-sweep")


def started_at() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
