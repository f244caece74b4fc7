"""A grid sweep: every combination of the ``--grid`` values, each trial checked before
the first starts, then run (or resumed) one ``cifarkit run`` process at a time."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from cifarkit.errors import CifarkitError, RecipeError
from cifarkit.sweeps.folder import name_run_dir, started, trial_dir


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
        if started(run_dir):  # continue it, never a second
            args = ["run", "--resume", str(run_dir), *child]
        else:  # named in sweep.json before its process starts
            run_dir = name_run_dir(folder, state, trial)
            args = ["run", recipe_file, *(a for o in trial["overrides"] for a in ("--set", o)),
                    "--run-dir", str(run_dir), *child]
        print(f"── trial {trial['trial']} of {len(state['trials'])}: "
              + ", ".join(f"{k}={v}" for k, v in trial["values"].items()), flush=True)
        stop.child = start_trial(args)
        stop.child.wait()
