"""``train.init_from`` and ``train.freeze``: start from another run's weights, keep some fixed.

Weights are read from the Keras weights file itself (HDF5, inside a ``.keras``
zip or on its own), never by loading a saved model: nothing in the file is
deserialised or run. Keras stores each layer's variables in a group whose
``name`` attribute is the layer's name, so layers are matched by name, and
taken only where every variable's shape matches.
"""

from __future__ import annotations

import fnmatch
import io
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from cifarkit.errors import RecipeError, first_line
from cifarkit.runs.checkpoint import WEIGHTS, candidates

MODEL = "model.keras"


def source_file(path: Path, where: str) -> Path:
    """The weights file ``path`` names: a run directory's model.keras (else its latest
    checkpoint), a ``.keras`` file or a ``.weights.h5`` file."""
    if path.is_dir():
        if (path / MODEL).is_file():
            return path / MODEL
        found = candidates(path)
        if found:
            return found[0] / WEIGHTS
        raise RecipeError(f"{where}: {path} holds neither {MODEL} nor a checkpoint; name a run "
                          "directory, a .keras file or a .weights.h5 file")
    if not path.exists():
        raise RecipeError(f"{where}: {path} does not exist")
    if path.suffix != ".keras" and not path.name.endswith(".weights.h5"):
        raise RecipeError(f"{where}: {path} is neither a run directory, a .keras file nor a "
                          ".weights.h5 file")
    return path


def read_layers(path: Path, where: str) -> dict[str, list[np.ndarray]]:
    """Each layer's saved variables, by layer name, in Keras's order (the optimizer's
    state is left out)."""
    import h5py

    try:
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                data = io.BytesIO(archive.read("model.weights.h5"))
            handle = h5py.File(data, "r")
        else:
            handle = h5py.File(path, "r")
        with handle:
            return dict(_layers(handle))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise RecipeError(f"{where}: {path} is not a readable Keras weights file "
                          f"({first_line(exc)})") from None


def _layers(handle) -> Iterator[tuple[str, list[np.ndarray]]]:
    import h5py

    groups: list[Any] = []
    handle.visititems(lambda name, item: groups.append(item) if (
        isinstance(item, h5py.Group) and name.split("/")[-1] == "vars"
        and not name.startswith("optimizer") and "name" in item.attrs) else None)
    seen: set[str] = set()
    for group in groups:
        name = group.attrs["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
        arrays = [np.asarray(group[key]) for key in sorted(group, key=int)]
        if arrays and name not in seen:  # the first of two same-named layers wins
            seen.add(name)
            yield name, arrays


def all_layers(model) -> list:
    """Every layer of ``model``, nested models' layers included (depth first)."""
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(all_layers(layer))
    return out


def load_matching(model, path: Path, where: str) -> str:
    """Load the layers of ``path`` that match ``model``'s by name and shape; return the
    one-line report. Nothing matching is an error."""
    source = read_layers(source_file(path, where), where)
    loaded, fresh = [], []
    for layer in all_layers(model):
        own: dict[str, Any] = {}
        layer.save_own_variables(own)
        if not own:
            continue
        shapes = [tuple(np.shape(own[str(i)])) for i in range(len(own))]
        saved = source.get(layer.name)
        if saved is None:
            fresh.append(f"{layer.name} (not there)")
        elif [a.shape for a in saved] != shapes:
            fresh.append(f"{layer.name} ({_shapes([a.shape for a in saved])} there; "
                         f"{_shapes(shapes)} here)")
        else:
            layer.load_own_variables({str(i): a for i, a in enumerate(saved)})
            loaded.append(layer.name)
    if not loaded:
        raise RecipeError(f"{where}: no layer of this model matches one in {path} by name and "
                          f"shape (there: {_names(sorted(source))}; here: {_names(fresh)})")
    line = f"init_from {path}: loaded {len(loaded)} of {len(loaded) + len(fresh)} layers"
    return line + (f"; fresh: {_names(fresh)}" if fresh else " (all)")


def freeze(model, patterns: tuple[str, ...], where: str) -> list[str]:
    """Set ``trainable = False`` on every layer whose name matches one of ``patterns``;
    return their names. A pattern that matches no layer with weights is an error."""
    layers = [layer for layer in all_layers(model) if layer.weights]
    frozen = []
    for pattern in patterns:
        matched = [layer for layer in layers if fnmatch.fnmatchcase(layer.name, pattern)]
        if not matched:
            raise RecipeError(f"{where}: {pattern!r} matches no layer with weights; the "
                              f"model's are {_names([layer.name for layer in layers], 40)}")
        for layer in matched:
            layer.trainable = False
            frozen.append(layer.name)
    return sorted(set(frozen), key=frozen.index)


def _shapes(shapes: list) -> str:
    return ", ".join("x".join(map(str, s)) or "scalar" for s in shapes)


def _names(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "") \
        if names else "none"
