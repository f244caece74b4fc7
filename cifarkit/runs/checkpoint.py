"""Per-epoch checkpoints for ``cifarkit run --resume``.

After every completed epoch the run directory gets ``checkpoint/``: the
model's and optimizer's variables (``weights.weights.h5``: weights, moments,
iteration count, learning rate), the metrics history, and the state of the
callbacks that have state (any callback with ``get_state()`` /
``set_state(state)`` methods: a dict of JSON-serialisable values, where a
list of NumPy arrays is kept in an ``.npz`` file beside it; the built-in
early stopping and learning-rate reduction are such callbacks), and the
resolved recipe that trained it.
It is written to a temporary folder and swapped in by renames, so a kill at
any moment leaves a complete checkpoint; the one before it is kept as
``.checkpoint-previous/``, the fallback when the newest is found damaged. A
write that fails (a full disk) removes its half-written folder and is one
line naming the path and the space needed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from cifarkit.files import check_hdf5
from cifarkit.runs import artifacts, manifest
from cifarkit.runs import folder as run_folder

from cifarkit.core import schema
from cifarkit.errors import CifarkitError, OutputError, RecipeError, first_line
from cifarkit.core.recipe import Recipe, recipe_from_document
from cifarkit.core.registry import Registry
from cifarkit.backends import DEFAULT, seed_states

CURRENT = "checkpoint"
PREVIOUS = ".checkpoint-previous"
PENDING = ".checkpoint-pending"


def _callback_state(cb, folder: Path, index: int) -> dict[str, Any] | None:
    """A callback's ``get_state()``, its lists of arrays saved beside it as ``.npz`` files."""
    if not (hasattr(cb, "get_state") and hasattr(cb, "set_state")):
        return None
    state = cb.get_state()
    if isinstance(state, dict):
        state = dict(state)
        for key, value in state.items():
            if isinstance(value, (list, tuple)) and value \
                    and all(isinstance(a, np.ndarray) for a in value):
                name = f"callback_{index}_{key}.npz"
                np.savez(folder / name, *value)
                state[key] = {"npz": name}
    return {"custom": state}


def _arrays_in(saved: dict[str, Any] | None) -> list[str]:
    """The .npz files a saved callback state refers to."""
    if not saved:
        return []
    state = saved.get("custom", saved)  # before 0.2: EarlyStopping's state unwrapped
    if not isinstance(state, dict):
        return []
    return [v["npz"] if isinstance(v, dict) else v for v in state.values()
            if (isinstance(v, dict) and isinstance(v.get("npz"), str))
            or (isinstance(v, str) and v.endswith(".npz"))]


def _load_state(folder: Path, saved: dict[str, Any]) -> Any:
    """A saved callback state as ``set_state`` takes it (arrays read back)."""
    state = saved.get("custom", saved)  # before 0.2: EarlyStopping's state unwrapped
    if not isinstance(state, dict):
        return state
    state = dict(state)
    for key, value in state.items():
        name = value.get("npz") if isinstance(value, dict) else (
            value if isinstance(value, str) and value.endswith(".npz") else None)
        if isinstance(name, str):
            with np.load(_saved_file(folder, name), allow_pickle=False) as arrays:
                state[key] = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
    return state


def _remove(path: Path) -> None:
    """Remove what stands at ``path``: a folder of the run with its files, or a link or
    file planted there (never followed)."""
    try:
        if os.path.islink(path) or not os.path.isdir(path):
            os.unlink(path)
        else:
            shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise OutputError(f"{path}: cannot remove it ({exc.strerror or exc})") from None


def _sign(run_dir: Path, pending: Path) -> None:
    """Record the pending checkpoint's files in the run's manifest before it is renamed into
    place: each file name accepts this checkpoint's digest and the current one's."""
    signed = manifest.signing(pending / WEIGHTS)
    if signed is None:
        return
    book = signed[0]
    for path in sorted(pending.iterdir()):
        name = f"checkpoint/{path.name}"
        current = book.files.get(name, [])[:1]
        book.keep_only(name, [manifest.file_digest(path), *current])
    book.flush()


def save(run_dir: Path, model, rows: list[dict], callbacks: list, stop_training: bool,
         recipe: dict[str, Any] | None = None) -> None:
    """Write a complete checkpoint for the epochs in ``rows``."""
    pending, current, previous = run_dir / PENDING, run_dir / CURRENT, run_dir / PREVIOUS
    _remove(pending)
    if os.path.lexists(current):  # at most two checkpoints on disk, also while writing
        _remove(previous)

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
        artifacts.write_raw(pending / "state.json", artifacts.json_text(state, indent=None)
                            .encode("utf-8"))
        _sign(run_dir, pending)

    artifacts.guarded_write(current, artifacts.weights_bytes(model, True), write,
                            lambda: shutil.rmtree(pending, ignore_errors=True))
    if os.path.lexists(current):
        current.rename(previous)
    pending.rename(current)


WEIGHTS = "weights.weights.h5"


def candidates(run_dir: Path) -> list[Path]:
    """Checkpoint folders that look complete, newest first."""
    return [run_dir / name for name in (CURRENT, PREVIOUS)
            if (run_dir / name / "state.json").is_file() and (run_dir / name / WEIGHTS).is_file()]


def load_state(folder: Path) -> dict[str, Any]:
    from cifarkit.runs.folder import read_json

    return read_json(folder / "state.json")


def _saved_file(folder: Path, name: Any) -> Path:
    """A file a checkpoint's state names: a plain name inside ``folder``, a regular file
    itself (no path, link, FIFO or device from a state.json written elsewhere)."""
    from cifarkit.runs.folder import is_regular

    if not isinstance(name, str) or Path(name).name != name or name.startswith("."):
        raise ValueError(f"state.json names {name!r}, which is not a file of the checkpoint")
    path = folder / name
    if not is_regular(path):
        raise ValueError(f"{name} is not a regular file of the checkpoint")
    return path


class Restore(NamedTuple):
    """A checkpoint to resume from: ``folder`` holds its files (a private, checked copy),
    ``state`` its parsed state.json, ``where`` the run folder's checkpoint it came from."""

    folder: Path
    state: dict[str, Any]
    where: Path


def _number_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def _rows(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(r, dict) and all(isinstance(k, str) and (v is None or isinstance(
            v, (int, float, str))) for k, v in r.items()) for r in value)


#: Each key of state.json, and whether a value is of its kind.
STATE_SCHEMA = {
    "epochs_completed": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "rows": _rows,
    "model_random_state": lambda v: v is None or (
        isinstance(v, list) and all(_number_list(a) for a in v)),
    "stop_training": lambda v: isinstance(v, bool),
    "callbacks": lambda v: isinstance(v, list) and all(
        c is None or (isinstance(c, dict) and isinstance(c.get("custom", c), dict)) for c in v),
    "recipe": lambda v: v is None or isinstance(v, dict),
}


def check_state(state: Any) -> dict[str, Any]:
    """state.json's content, checked against :data:`STATE_SCHEMA` (``ValueError`` naming
    the first key that is missing or of the wrong kind)."""
    if not isinstance(state, dict):
        raise ValueError("state.json is not a cifarkit checkpoint state")
    for key, valid in STATE_SCHEMA.items():
        if key not in state and key == "rows":
            raise ValueError(f"state.json: {key}: missing")
        if key in state and not valid(state[key]):
            raise ValueError(f"state.json: {key}: not what a cifarkit checkpoint holds there")
    return state


def verify(folder: Path) -> dict[str, Any]:
    """Read a checkpoint through (state, weights, saved arrays); return its state.

    Raises whatever reading a damaged file raises (a truncated HDF5 or NumPy
    file, JSON that ends early); an HDF5 file that would read other files, or a
    state of the wrong shape, is a ``ValueError`` saying so.
    """
    import h5py

    state = check_state(load_state(folder))
    with h5py.File(_saved_file(folder, WEIGHTS), "r") as f:
        check_hdf5(f)
        f.visititems(lambda name, obj: obj[()] if isinstance(obj, h5py.Dataset) else None)
    for saved in state.get("callbacks") or []:
        for name in _arrays_in(saved if isinstance(saved, dict) else None):
            with np.load(_saved_file(folder, name), allow_pickle=False) as arrays:
                [arrays[k] for k in arrays.files]
    return state


def restore_random_state(model, state: dict[str, Any]) -> None:
    """Put the model's random-number states (dropout's seed generators) back."""
    saved = state.get("model_random_state")
    variables = seed_states([model])
    if saved is None or len(saved) != len(variables):
        return
    for v, value in zip(variables, saved):
        array = np.asarray(value, dtype=np.asarray(v.numpy()).dtype)
        if array.shape != tuple(v.shape):
            raise OutputError(f"checkpoint state.json: model_random_state: an array of shape "
                              f"{array.shape} where the model's seed has {tuple(v.shape)}; "
                              "start the run again")
        v.assign(array)


def restore_callbacks(folder: Path, state: dict[str, Any], callbacks: list,
                      fresh_patience: bool = False) -> None:
    """Put saved callback state back (call after the callbacks' on_train_begin).
    ``fresh_patience``: a completed run trained on; callbacks that count epochs without
    improvement (early stopping, learning-rate reduction) start counting again, from
    the best value they had seen."""
    for i, (cb, saved) in enumerate(zip(callbacks, state.get("callbacks", []))):
        if saved is not None and hasattr(cb, "set_state"):
            try:
                cb.set_state(_load_state(folder, saved))
            except Exception as exc:  # a state written elsewhere, or by other code
                raise OutputError(f"checkpoint state.json: callbacks[{i}]: "
                                  f"{type(cb).__name__} cannot take the saved state "
                                  f"({type(exc).__name__}: {first_line(exc)}); start the "
                                  "run again") from None
        if fresh_patience:
            for counter in ("wait", "stopped_epoch"):
                if isinstance(getattr(cb, counter, None), int):
                    setattr(cb, counter, 0)


def remove(run_dir: Path) -> None:
    for name in (CURRENT, PREVIOUS, PENDING):
        _remove(run_dir / name)


def keep_final(run_dir: Path) -> None:
    """A completed run keeps its last checkpoint (weights, optimizer and callback state:
    what ``run --resume --set train.epochs=N`` trains on from), nothing older; its
    manifest then vouches for that checkpoint's files alone."""
    for name in (PREVIOUS, PENDING):
        _remove(run_dir / name)
    signed = manifest.signing(run_dir / CURRENT / WEIGHTS)
    if signed is not None and run_folder.is_folder(run_dir / CURRENT):
        book = signed[0]
        for path in (run_dir / CURRENT).iterdir():
            book.keep_only(f"checkpoint/{path.name}", [manifest.file_digest(path)])
        book.flush()


def resume_editable(recipe: Recipe, registry: Registry) -> list[str]:
    """The keys a resume honours when recipe.toml was edited after the run started, as
    the schema declares them, plus the dataset's path parameters (moved data); every
    other edit would silently not apply (weights, optimizer state and data order come
    from the checkpoint), so it is refused."""
    dataset = registry.get("dataset", recipe.data.dataset.plugin)
    return schema.resume_editable() + [f"data.{p.name}" for p in dataset.params if p.is_path]


def check_edits(recipe: Recipe, registry: Registry, state: dict[str, Any], run_dir: Path) -> None:
    """Refuse, in one line naming the key, an edit of recipe.toml a resume cannot honour.

    ``recipe`` is the recipe as it is now, ``state`` the checkpoint's (which keeps
    the resolved recipe that trained it; read with today's schema, so a key added
    since then has its default there too, and is no edit).
    """
    where = f"{run_dir / 'recipe.toml'}: "
    set_keys = {o.split("=", 1)[0].strip() for o in recipe.overrides}
    done = len(state.get("rows", []))
    if recipe.train.epochs < done:
        raise RecipeError(f"{where}train.epochs: {recipe.train.epochs} is fewer than the {done} "
                          "epochs this run has already done")
    before = state.get("recipe")
    if not isinstance(before, dict):
        return  # a checkpoint written before recipes were kept in it
    try:
        # read, never run: the kept recipe's plugin files are not imported
        before = recipe_from_document(before, run_dir / "recipe.toml", registry,
                                      load_plugins=False).resolved()
    except CifarkitError:
        pass  # a plugin since uninstalled, say: compare what was written
    editable = resume_editable(recipe, registry)
    old, new = _flat(before), _flat(recipe.resolved())
    old.setdefault("train.backend", DEFAULT)  # recipes kept before train.backend existed
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key) or any(key == e or key.startswith(e + ".")
                                                for e in editable):
            continue
        how = ("--set changes it" if any(key == k or key.startswith(k + ".") for k in set_keys)
               else "changed since the run started")
        raise RecipeError(
            f"{where}{key}: {how} ({_shown(old.get(key))} -> "
            f"{_shown(new.get(key))}); a resume continues the same training and can honour "
            f"only {', '.join(editable)}: undo the edit, or start a new run")


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
