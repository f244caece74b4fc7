"""Run directories read as rows (``cifarkit runs``, the sweep table): summary.json and
metrics.csv through :mod:`cifarkit.runs.folder` (bounded, no links followed), never a
recipe's code. A folder that is not a readable run is a row marked unreadable.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from cifarkit.errors import CifarkitError, OutputError, first_line
from cifarkit.runs import folder


def read_metrics(run_dir: Path) -> list[dict[str, float | None]]:
    try:
        raw_rows = folder.read_csv(run_dir / "metrics.csv")
    except FileNotFoundError:
        return []
    return [{k: _number(v) for k, v in raw.items() if isinstance(k, str) and k}
            for raw in raw_rows]


def _text(value: Any) -> str | None:
    """A summary's text field as text (bounded), whatever type the file gave it."""
    return None if value is None else str(value)[:200] if isinstance(value, str) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def describe(run_dir: Path) -> dict[str, Any]:
    """One run directory as a row; a folder that is not a readable run is a row with
    status "unreadable" and the reason."""
    from cifarkit.runs.artifacts import read_summary

    row: dict[str, Any] = {"name": run_dir.name, "path": str(run_dir)}
    if os.path.lexists(run_dir / "sweep.json"):  # a sweep folder: `runs` on it lists its trials
        try:
            sweep = folder.read_json(run_dir / "sweep.json")
            trials = sweep.get("trials")
            return {**row, "status": "sweep", "recipe": _text(sweep.get("recipe_name")),
                    "epochs": f"{len(trials) if isinstance(trials, list) else '?'} trials",
                    "started": _text(sweep.get("started_at"))}
        except (CifarkitError, OSError) as exc:
            return {**row, "status": "unreadable", "error": first_line(exc)}
    try:
        summary = read_summary(run_dir)
        rows = read_metrics(run_dir)
    except (CifarkitError, OSError, ValueError) as exc:
        return {**row, "status": "unreadable", "error": first_line(exc)}
    val = [r["val_accuracy"] for r in rows if r.get("val_accuracy") is not None]
    done, planned = summary.get("epochs_run"), summary.get("epochs_planned")
    row.update(recipe=_text(summary.get("recipe")), backend=_text(summary.get("backend")),
               status=_text(summary.get("status")),
               epochs_run=done if _is_int(done) else len(rows),
               epochs_planned=planned if _is_int(planned) else None,
               best_val_accuracy=max(val) if val else None,
               test_accuracy=_number(summary.get("test_accuracy")),
               test_loss=_number(summary.get("test_loss")),
               train_time_s=_number(summary.get("train_time_s")),
               started=_text(summary.get("started_at")))
    row["epochs"] = f"{row['epochs_run']}/{row['epochs_planned'] or '?'}"
    return row


def list_runs(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """A row for every folder in ``folder`` (hidden ones left out), as ``cifarkit runs
    --json`` prints them: ``name``, ``path``, ``recipe``, ``backend``, ``status``,
    ``epochs_run``, ``best_val_accuracy``, ``test_accuracy``, ``test_loss``, ..."""
    folder = Path(folder)
    if not folder.is_dir():
        raise OutputError(f"{folder}: no such folder (runs lists the run directories in a "
                          "folder, by default ./runs, where `cifarkit run` writes them)")
    return [describe(d) for d in sorted(folder.iterdir())
            if d.is_dir() and not d.name.startswith(".")]
