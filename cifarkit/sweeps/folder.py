"""The sweep folder: sweep.json (signed with this user's key), the trials' run
directories in it, and the trials as table rows."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from cifarkit.errors import OutputError

SWEEP_FILE = "sweep.json"


def write_state(folder: Path, state: dict[str, Any]) -> None:
    """sweep.json, and its signature (this user's key): a later ``sweep --resume`` runs
    what it names only when this user's cifarkit wrote it (or with --trust-run)."""
    from cifarkit.runs.artifacts import atomic_write, json_text
    from cifarkit.runs.trust import SIGNATURE_NAME, sweep_signature

    text = json_text(state)
    atomic_write(folder / SWEEP_FILE, text)
    atomic_write(folder / SIGNATURE_NAME, sweep_signature(text) + "\n")


def check_trusted(folder: Path, trust_run: bool) -> dict[str, Any]:
    """The sweep folder's state, read once: sweep.json's bytes are checked against the
    folder's signature and parsed from those same bytes. Refuses (one line) a sweep
    folder this user's cifarkit did not write, unless the user vouches for it: its
    sweep.json names a recipe, overrides (plugin files among them) and a storage URL
    that a resume would read and run."""
    from cifarkit.runs.folder import decode, read_bytes
    from cifarkit.runs.trust import is_own_sweep

    path = folder / SWEEP_FILE
    try:
        data = read_bytes(path)
    except FileNotFoundError:
        raise OutputError(f"{folder}: not a sweep folder (no {SWEEP_FILE})") from None
    if not trust_run and not is_own_sweep(folder, decode(path, data)):
        raise OutputError(f"{path}: this sweep folder was not made by your cifarkit (or its "
                          "sweep.json was edited since), and resuming it would run the recipe, "
                          "overrides and plugin files it names; pass --trust-run if you trust it")
    return _state(path, data)


def _state(path: Path, data: bytes) -> dict[str, Any]:
    from cifarkit.runs.folder import parse_json

    state = parse_json(path, data)
    if not isinstance(state.get("trials"), list):
        raise OutputError(f"{path}: not a cifarkit sweep file")
    return state


def trial_dir(folder: Path, trial: dict[str, Any]) -> Path | None:
    """A trial's run directory: a plain folder name inside the sweep folder, else none."""
    name = trial.get("run_dir")
    if not isinstance(name, str) or not name or Path(name).name != name or name.startswith("."):
        return None
    return folder / name


def read_state(folder: Path) -> dict[str, Any]:
    """sweep.json, read as data (nothing it names is run)."""
    from cifarkit.runs.folder import read_bytes

    path = folder / SWEEP_FILE
    try:
        return _state(path, read_bytes(path))
    except FileNotFoundError:
        raise OutputError(f"{folder}: not a sweep folder (no {SWEEP_FILE})") from None


def rows(folder: Path, state: dict[str, Any]) -> list[dict[str, Any]]:
    """Each trial's values and outcome (see :func:`cifarkit.runs.listing.describe`)."""
    from cifarkit.runs.listing import describe

    out = []
    for trial in state["trials"]:
        run_dir = trial_dir(folder, trial)
        row = (describe(run_dir) if started(run_dir)
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


def new_folder(output: Path, name: str) -> Path:
    from cifarkit.runs.artifacts import check_output, create_run_dir

    check_output(output)
    return create_run_dir(output, f"{name}-sweep")


def started_at() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def name_run_dir(folder: Path, state: dict[str, Any], trial: dict[str, Any]) -> Path:
    """The trial's run directory, named in sweep.json before its process starts (a sweep
    killed at any moment then resumes that trial's run instead of starting another)."""
    if trial_dir(folder, trial) is None:
        from cifarkit.runs.artifacts import run_dir_name

        trial["run_dir"] = run_dir_name(trial["name"])
        write_state(folder, state)
    return folder / trial["run_dir"]


def started(run_dir: Path | None) -> bool:
    """Whether a trial's run got far enough to resume (its recipe.toml or summary.json
    exists); a folder named but empty was never started."""
    return run_dir is not None and any(os.path.lexists(run_dir / name)
                                       for name in ("recipe.toml", "summary.json"))
