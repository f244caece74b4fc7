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
import stat
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from cifarkit.errors import RecipeError, first_line
from cifarkit.runs.checkpoint import WEIGHTS, candidates

MODEL = "model.keras"


def source_file(path: Path, where: str) -> Path:
    """The weights file ``path`` names: a run directory's model.keras (else its latest
    checkpoint), a ``.keras`` file or a ``.weights.h5`` file (regular files only)."""
    if path.is_dir():
        if (path / MODEL).is_file():
            path = path / MODEL
        else:
            found = candidates(path)
            if not found:
                raise RecipeError(f"{where}: {path} holds neither {MODEL} nor a checkpoint; "
                                  "name a run directory, a .keras file or a .weights.h5 file")
            path = found[0] / WEIGHTS
    elif not path.exists():
        raise RecipeError(f"{where}: {path} does not exist")
    elif path.suffix != ".keras" and not path.name.endswith(".weights.h5"):
        raise RecipeError(f"{where}: {path} is neither a run directory, a .keras file nor a "
                          ".weights.h5 file")
    if not stat.S_ISREG(path.stat().st_mode):  # a FIFO would hang, a device never end
        raise RecipeError(f"{where}: {path} is not a regular file")
    return path


def read_layers(path: Path, where: str,
                wanted: dict[str, list[tuple]] | None = None) -> dict[str, list]:
    """Each layer's saved variables, by layer name, in Keras's order (the optimizer's
    state is left out). With ``wanted`` ({layer name: variable shapes}), only the layers
    saved with exactly those shapes are read; every other layer comes back as its saved
    shapes (tuples), never read. Files that would read other files (HDF5 external links,
    external storage, virtual datasets) are refused, as are variables that are not numbers."""
    import h5py

    from cifarkit.files import check_hdf5, check_keras_archive, read_regular

    try:
        if path.suffix == ".keras":  # read once: checked and unpacked from the same bytes
            raw = read_regular(path, 8 << 30)
            check_keras_archive(path, raw)
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                data = io.BytesIO(archive.read("model.weights.h5"))
            handle = h5py.File(data, "r")
        else:
            handle = h5py.File(path, "r")
        with handle:
            check_hdf5(handle)
            return dict(_layers(handle, wanted))
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as exc:
        raise RecipeError(f"{where}: {path} is not a readable Keras weights file "
                          f"({first_line(exc)})") from None


def _layers(handle, wanted) -> Iterator[tuple[str, list]]:
    import h5py

    groups: list[Any] = []
    handle.visititems(lambda name, item: groups.append(item) if (
        isinstance(item, h5py.Group) and name.split("/")[-1] == "vars"
        and not name.startswith("optimizer") and "name" in item.attrs) else None)
    seen: set[str] = set()
    for group in groups:
        name = group.attrs["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
        datasets = [group[key] for key in sorted(group, key=int)]
        if not datasets or name in seen:  # the first of two same-named layers wins
            continue
        seen.add(name)
        shapes = [tuple(d.shape) for d in datasets]
        if wanted is not None and wanted.get(name) != shapes:
            yield name, shapes
            continue
        for d in datasets:
            if d.dtype.kind not in "biuf":
                raise ValueError(f"{d.name} holds {d.dtype}, not numbers")
        yield name, [np.asarray(d) for d in datasets]


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
    here: dict[str, list[tuple]] = {}
    for layer in all_layers(model):
        own: dict[str, Any] = {}
        layer.save_own_variables(own)
        if own:
            here.setdefault(layer.name, [tuple(np.shape(own[str(i)])) for i in range(len(own))])
    source = read_layers(source_file(path, where), where, wanted=here)
    loaded, fresh = [], []
    for layer in all_layers(model):
        shapes = here.get(layer.name)
        if shapes is None:
            continue
        saved = source.get(layer.name)
        saved_shapes = None if saved is None else [a if isinstance(a, tuple) else a.shape
                                                   for a in saved]
        if saved is None:
            fresh.append(f"{layer.name} (not there)")
        elif saved_shapes != shapes or any(isinstance(a, tuple) for a in saved):
            fresh.append(f"{layer.name} ({_shapes(saved_shapes)} there; "
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
