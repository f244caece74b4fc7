"""Per-epoch checkpoints for ``cifarkit run --resume``.

After every completed epoch the run directory gets ``checkpoint/``: the
model's and optimizer's variables (``weights.weights.h5``: weights, moments,
iteration count, learning rate), the metrics history, and the state of the
callbacks that have state (early stopping, learning-rate reduction, and any
callback with ``get_state()`` / ``set_state(state)`` methods returning and
taking JSON-serialisable values). It is written to a temporary folder and
swapped in by renames, so a kill at any moment leaves a complete checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from . import artifacts
from .pipeline import seed_states

CURRENT = "checkpoint"
PREVIOUS = ".checkpoint-previous"
PENDING = ".checkpoint-pending"


def _callback_state(cb, folder: Path, index: int) -> dict[str, Any] | None:
    import keras

    if hasattr(cb, "get_state") and hasattr(cb, "set_state"):
        return {"custom": cb.get_state()}
    if isinstance(cb, keras.callbacks.EarlyStopping):
        state = {"wait": cb.wait, "best": _num(cb.best), "best_epoch": cb.best_epoch,
                 "stopped_epoch": cb.stopped_epoch, "best_weights": None}
        if cb.best_weights is not None:
            name = f"early_stopping_{index}.npz"
            np.savez(folder / name, *cb.best_weights)
            state["best_weights"] = name
        return state
    if isinstance(cb, keras.callbacks.ReduceLROnPlateau):
        return {"wait": cb.wait, "best": _num(cb.best), "cooldown_counter": cb.cooldown_counter}
    return None


def _num(value):
    return None if value is None else float(value)


def save(run_dir: Path, model, rows: list[dict], callbacks: list, stop_training: bool) -> None:
    """Write a complete checkpoint for the epochs in ``rows``."""
    pending = run_dir / PENDING
    shutil.rmtree(pending, ignore_errors=True)
    pending.mkdir()
    model.save_weights(pending / "weights.weights.h5")
    state = {
        "epochs_completed": len(rows),
        # dropout & co.: not among the saved weights, but part of where training stands
        "model_random_state": [np.asarray(v.numpy()).tolist() for v in seed_states([model])],
        "rows": rows,
        "stop_training": bool(stop_training),
        "callbacks": [_callback_state(cb, pending, i) for i, cb in enumerate(callbacks)],
    }
    artifacts.atomic_write(pending / "state.json", json.dumps(state))
    current, previous = run_dir / CURRENT, run_dir / PREVIOUS
    shutil.rmtree(previous, ignore_errors=True)
    if current.exists():
        current.rename(previous)
    pending.rename(current)
    shutil.rmtree(previous, ignore_errors=True)


def find(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder, if any."""
    for name in (CURRENT, PREVIOUS):
        folder = run_dir / name
        if (folder / "state.json").is_file() and (folder / "weights.weights.h5").is_file():
            return folder
    return None


def load_state(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "state.json").read_text())


def restore_random_state(model, state: dict[str, Any]) -> None:
    """Put the model's random-number states (dropout's seed generators) back."""
    saved = state.get("model_random_state")
    variables = seed_states([model])
    if saved is None or len(saved) != len(variables):
        return
    for v, value in zip(variables, saved):
        v.assign(np.asarray(value, dtype=np.asarray(v.numpy()).dtype))


def restore_callbacks(folder: Path, state: dict[str, Any], callbacks: list) -> None:
    """Put saved callback state back (call after the callbacks' on_train_begin)."""
    import keras

    for cb, saved in zip(callbacks, state.get("callbacks", [])):
        if saved is None:
            continue
        if "custom" in saved and hasattr(cb, "set_state"):
            cb.set_state(saved["custom"])
        elif isinstance(cb, keras.callbacks.EarlyStopping):
            cb.wait, cb.best = saved["wait"], saved["best"]
            cb.best_epoch, cb.stopped_epoch = saved["best_epoch"], saved["stopped_epoch"]
            if saved.get("best_weights"):
                with np.load(folder / saved["best_weights"], allow_pickle=False) as arrays:
                    cb.best_weights = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
        elif isinstance(cb, keras.callbacks.ReduceLROnPlateau):
            cb.wait, cb.cooldown_counter = saved["wait"], saved["cooldown_counter"]
            cb.best = saved["best"] if saved["best"] is not None else cb.best


def remove(run_dir: Path) -> None:
    for name in (CURRENT, PREVIOUS, PENDING):
        shutil.rmtree(run_dir / name, ignore_errors=True)
