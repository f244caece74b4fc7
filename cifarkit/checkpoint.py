"""Per-epoch checkpoints for ``cifarkit run --resume``.

After every completed epoch the run directory gets ``checkpoint/``: the
model's and optimizer's variables (``weights.weights.h5``: weights, moments,
iteration count, learning rate), the metrics history, and the state of the
callbacks that have state (early stopping, learning-rate reduction, and any
callback with ``get_state()`` / ``set_state(state)`` methods returning and
taking JSON-serialisable values), and the resolved recipe that trained it.
It is written to a temporary folder and swapped in by renames, so a kill at
any moment leaves a complete checkpoint; the one before it is kept as
``.checkpoint-previous/``, the fallback when the newest is found damaged. A
write that fails (a full disk) removes its half-written folder and is one
line naming the path and the space needed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from . import artifacts
from .errors import OutputError, RecipeError, first_line
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


def save(run_dir: Path, model, rows: list[dict], callbacks: list, stop_training: bool,
         recipe: dict[str, Any] | None = None) -> None:
    """Write a complete checkpoint for the epochs in ``rows``."""
    pending, current, previous = run_dir / PENDING, run_dir / CURRENT, run_dir / PREVIOUS
    shutil.rmtree(pending, ignore_errors=True)
    if current.exists():  # at most two checkpoints on disk, also while writing
        shutil.rmtree(previous, ignore_errors=True)

    def write() -> None:
        pending.mkdir()
        model.save_weights(pending / WEIGHTS)
        state = {
            "epochs_completed": len(rows),
            # dropout & co.: not among the saved weights, but part of where training stands
            "model_random_state": [np.asarray(v.numpy()).tolist() for v in seed_states([model])],
            "rows": rows,
            "stop_training": bool(stop_training),
            "callbacks": [_callback_state(cb, pending, i) for i, cb in enumerate(callbacks)],
            "recipe": recipe,
        }
        artifacts.atomic_write(pending / "state.json", json.dumps(state))

    artifacts.guarded_write(current, artifacts.weights_bytes(model, True), write,
                            lambda: shutil.rmtree(pending, ignore_errors=True))
    if current.exists():
        current.rename(previous)
    pending.rename(current)


WEIGHTS = "weights.weights.h5"


def candidates(run_dir: Path) -> list[Path]:
    """Checkpoint folders that look complete, newest first."""
    return [run_dir / name for name in (CURRENT, PREVIOUS)
            if (run_dir / name / "state.json").is_file() and (run_dir / name / WEIGHTS).is_file()]


def load_state(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "state.json").read_text())


def verify(folder: Path) -> dict[str, Any]:
    """Read a checkpoint through (state, weights, saved arrays); return its state.

    Raises whatever reading a damaged file raises (a truncated HDF5 or NumPy
    file, JSON that ends early).
    """
    import h5py

    state = load_state(folder)
    if not isinstance(state, dict) or not isinstance(state.get("rows"), list):
        raise ValueError("state.json is not a cifarkit checkpoint state")
    with h5py.File(folder / WEIGHTS, "r") as f:
        f.visititems(lambda name, obj: obj[()] if isinstance(obj, h5py.Dataset) else None)
    for saved in state.get("callbacks") or []:
        if saved and saved.get("best_weights"):
            with np.load(folder / saved["best_weights"], allow_pickle=False) as arrays:
                [arrays[k] for k in arrays.files]
    return state


def usable(run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that reads through, with its state; ``None`` if there is none.

    A damaged newest checkpoint falls back to the previous one; when every
    checkpoint is damaged, one line says so.
    """
    problems = []
    for folder in candidates(run_dir):
        try:
            return folder, verify(folder)
        except Exception as exc:
            problems.append(f"{folder.name}: {first_line(exc)}")
    if problems:
        raise OutputError(f"{run_dir}: no readable checkpoint ({'; '.join(problems)}); "
                          "start the run again")
    return None


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


#: What a resume honours when recipe.toml was edited after the run started; every
#: other edit would silently not apply (weights, optimizer state and data order
#: come from the checkpoint), so it is refused.
RESUME_EDITABLE = ("name", "description", "plugins", "train.epochs", "callbacks", "data.path")


def check_edits(epochs: int, resolved: dict[str, Any], state: dict[str, Any],
                run_dir: Path) -> None:
    """Refuse, in one line naming the key, an edit of recipe.toml a resume cannot honour.

    ``epochs`` and ``resolved`` describe the recipe as it is now, ``state``
    is the checkpoint's (which keeps the resolved recipe that trained it).
    """
    where = f"{run_dir / 'recipe.toml'}: "
    done = len(state.get("rows", []))
    if epochs < done:
        raise RecipeError(f"{where}train.epochs: {epochs} is fewer than the {done} "
                          "epochs this run has already done")
    before = state.get("recipe")
    if not isinstance(before, dict):
        return  # a checkpoint written before recipes were kept in it
    old, new = _flat(before), _flat(resolved)
    old.setdefault("train.backend", "tensorflow")  # recipes kept before train.backend existed
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key) or any(key == e or key.startswith(e + ".")
                                                for e in RESUME_EDITABLE):
            continue
        raise RecipeError(
            f"{where}{key}: changed since the run started ({_shown(old.get(key))} -> "
            f"{_shown(new.get(key))}); a resume continues the same training and can honour "
            f"only {', '.join(RESUME_EDITABLE)}: undo the edit, or start a new run")


def _flat(doc: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in doc.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _shown(value: Any) -> str:
    return "unset" if value is None else json.dumps(value)
