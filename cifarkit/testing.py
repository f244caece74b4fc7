"""Helpers for tests: tiny datasets written in the real on-disk CIFAR formats.

Used by cifarkit's own test suite; plugin authors can use them too. NumPy
only, no TensorFlow.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]


def _images(rng: np.random.Generator, labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Learnable synthetic images: each class has its own mean colour, plus noise."""
    base = palette[labels][:, :, None, None]  # (n, 3, 1, 1), channel-major like CIFAR
    noise = rng.normal(0, 25, size=(len(labels), 3, 32, 32))
    return np.clip(base + noise, 0, 255).astype(np.uint8).reshape(len(labels), 3072)


def _dump(obj: dict) -> bytes:
    return pickle.dumps(obj, protocol=4)  # numpy arrays via _reconstruct, as keras reads them


def cifar10_files(n_train: int = 100, n_test: int = 40, seed: int = 0) -> dict[str, bytes]:
    """The files of a ``cifar-10-batches-py`` folder, as {name: bytes}."""
    rng = np.random.default_rng(seed)
    y_train = np.arange(n_train) % 10
    y_test = np.arange(n_test) % 10
    rng.shuffle(y_train)
    palette = rng.integers(0, 256, size=(10, 3))
    x_train = _images(rng, y_train, palette)
    x_test = _images(rng, y_test, palette)
    files = {"batches.meta": _dump({b"label_names": [c.encode() for c in CIFAR10_CLASSES],
                                    b"num_cases_per_batch": -(-n_train // 5),
                                    b"num_vis": 3072})}
    for b, idx in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        files[f"data_batch_{b}"] = _dump({
            b"batch_label": f"training batch {b} of 5".encode(),
            b"labels": [int(v) for v in y_train[idx]],
            b"data": x_train[idx],
            b"filenames": [f"img_{i}.png".encode() for i in idx]})
    files["test_batch"] = _dump({b"batch_label": b"testing batch 1 of 1",
                                 b"labels": [int(v) for v in y_test], b"data": x_test,
                                 b"filenames": [f"test_{i}.png".encode() for i in range(n_test)]})
    return files


def cifar100_files(n_train: int = 100, n_test: int = 40, seed: int = 0) -> dict[str, bytes]:
    """The files of a ``cifar-100-python`` folder, as {name: bytes}."""
    rng = np.random.default_rng(seed)
    fine_train = np.arange(n_train) % 100
    fine_test = np.arange(n_test) % 100
    meta = {b"fine_label_names": [f"fine_{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse_{i}".encode() for i in range(20)]}

    palette = rng.integers(0, 256, size=(100, 3))

    def split(fine, name):
        return _dump({b"batch_label": name.encode(), b"fine_labels": [int(v) for v in fine],
                      b"coarse_labels": [int(v) // 5 for v in fine],
                      b"data": _images(rng, fine, palette), b"filenames": [b"x.png"] * len(fine)})

    return {"meta": _dump(meta), "train": split(fine_train, "training"),
            "test": split(fine_test, "testing")}


def write_folder(files: dict[str, bytes], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, raw in files.items():
        (folder / name).write_bytes(raw)
    return folder


def write_tar_gz(files: dict[str, bytes], archive: Path, folder: str) -> Path:
    """Write ``files`` under ``folder/`` in a .tar.gz, like the official archives."""
    with tarfile.open(archive, "w:gz") as tar:
        for name, raw in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return archive


def write_cifar10(root: Path, n_train: int = 100, n_test: int = 40, seed: int = 0) -> Path:
    """Write ``root/cifar-10-batches-py`` and return its path."""
    return write_folder(cifar10_files(n_train, n_test, seed), Path(root) / "cifar-10-batches-py")


def write_cifar100(root: Path, n_train: int = 100, n_test: int = 40, seed: int = 0) -> Path:
    """Write ``root/cifar-100-python`` and return its path."""
    return write_folder(cifar100_files(n_train, n_test, seed), Path(root) / "cifar-100-python")


def run_cli(*args: str, registry=None, env: dict | None = None):
    """``cifarkit ARGS`` run in this process: a ``subprocess.CompletedProcess`` with the
    exit status, stdout and stderr, as the command would give them (no interpreter or
    Keras start-up). ``registry``: the plugins whose commands the command line has
    (default: the installed ones, as ``cifarkit`` loads them). ``env``: variables set
    for the command only. A bug's traceback lands in stderr, exit status 1."""
    import contextlib
    import os
    import subprocess
    import traceback

    from cifarkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    os.environ.update({"COLUMNS": "120", **(env or {})})
    os.environ.pop("FORCE_COLOR", None)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args], registry=registry)
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 1
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(["cifarkit", *map(str, args)], code, out.getvalue(),
                                       err.getvalue())
