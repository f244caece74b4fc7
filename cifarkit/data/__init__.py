"""Datasets in memory: CIFAR readers, the restricted unpickler, splitting.

NumPy only: nothing here imports TensorFlow, so a bad data path fails in a
fraction of a second, before any framework starts.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cifarkit.errors import DataError, first_line, terminal_safe
from cifarkit.files import FileTooLarge, NotRegularFile, read_regular

# Exactly the globals a CIFAR python batch needs: numpy arrays. The same set
# as keras.src.datasets.npz_utils.RestrictedUnpickler, without importing Keras.
_ALLOWED_GLOBALS = frozenset({
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    # protocol 5 (Python 3.8+ pickling NumPy arrays): an array from a byte buffer
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
})


def _latin1(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """Protocol 2 stores bytes as ``_codecs.encode(text, "latin1")``: only that is allowed."""
    if encoding.replace("-", "").replace("_", "").lower() not in ("latin1", "iso88591") \
            or not isinstance(text, str):
        raise RefusedGlobal(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1", errors)


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside the CIFAR allow-list."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays; refuses every other global."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1
        raise RefusedGlobal(f"refusing to load global {module}.{name}")


def unpickle(raw: bytes, where: str) -> dict:
    """Safely read one CIFAR batch file's bytes into a dict with str keys."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except RefusedGlobal as exc:
        raise DataError(f"{where}: not a valid CIFAR batch file ({exc}); "
                        "the file may be corrupted or malicious") from None
    except Exception as exc:  # truncated streams raise EOFError, ValueError, ...
        raise DataError(f"{where}: corrupted or truncated CIFAR batch file "
                        f"({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: not a CIFAR batch file (expected a dict, "
                        f"got {type(obj).__name__})")
    return {(k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)): v
            for k, v in obj.items()}


@dataclass
class Splits:
    """A dataset in memory: uint8 images (n, h, w, c) and int labels (n,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]

    def check(self, where: str) -> "Splits":
        """Validate shapes, dtypes and label ranges; return self.

        Class names are made terminal-safe (control characters escaped), since
        they are printed and written to summary.json.
        """
        self.class_names = [terminal_safe(name) for name in self.class_names]
        k = len(self.class_names)
        if k < 2:
            raise DataError(f"{where}: need at least 2 classes, found {k}")
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] not in (1, 3):
                raise DataError(f"{where}: {split} images must be uint8 (n, h, w, 1|3), "
                                f"got {x.dtype} {x.shape}")
            if y.ndim != 1 or len(y) != len(x):
                raise DataError(f"{where}: {split} has {len(x)} images but labels of shape {y.shape}")
            if len(x) == 0:
                raise DataError(f"{where}: {split} split is empty")
            if y.min() < 0 or y.max() >= k:
                raise DataError(f"{where}: {split} labels must lie in [0, {k - 1}], "
                                f"found {int(y.min())}..{int(y.max())}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(f"{where}: train images {self.x_train.shape[1:]} and test images "
                            f"{self.x_test.shape[1:]} differ in shape")
        return self


def _batch_arrays(d: dict, label_key: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    if "data" not in d or label_key not in d:
        raise DataError(f"{where}: not a CIFAR batch (needs keys 'data' and {label_key!r}, "
                        f"has {sorted(d)})")
    data, labels = d["data"], d[label_key]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DataError(f"{where}: 'data' must be a uint8 array of shape (n, 3072), "
                        f"got {getattr(data, 'dtype', type(data).__name__)} {shape}")
    labels = _int_labels(labels)
    if labels is None:
        raise DataError(f"{where}: {label_key!r} must be a list (or integer array) of integers")
    if labels.shape != (data.shape[0],):
        raise DataError(f"{where}: {data.shape[0]} images but {label_key!r} has shape {labels.shape}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _int_labels(labels) -> np.ndarray | None:
    """Labels as an int64 array if they are a flat list or array of integers, else None.

    Checked item by item (type only), so a crafted nested list is refused at
    its first item instead of being converted for minutes; floats, strings
    and booleans are refused, not rounded or parsed.
    """
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            return None
        return labels.astype(np.int64)
    if not isinstance(labels, list):
        return None
    for value in labels:
        if type(value) is not int:
            return None
    try:
        return np.asarray(labels, dtype=np.int64)
    except OverflowError:
        return None


#: The largest CIFAR files: a CIFAR-10 batch holds 10,000 images (30.7 MB
#: pickled), CIFAR-100's ``train`` 50,000 (153 MB); the limits leave 30 % over.
BATCH_LIMIT_BYTES = 40_000_000
TRAIN_LIMIT_BYTES = 200_000_000
META_LIMIT_BYTES = 1_000_000


#: All of one copy's files together (CIFAR-10: 184 MB; CIFAR-100: 184 MB).
MAX_TOTAL_BYTES = 250_000_000


def member_limit(name: str) -> int:
    """The largest size a CIFAR file called ``name`` may have."""
    if name == "train":
        return TRAIN_LIMIT_BYTES
    if name in ("meta", "batches.meta"):
        return META_LIMIT_BYTES
    return BATCH_LIMIT_BYTES


class _Source:
    """Files of a CIFAR copy: a directory or the official .tar.gz, read in place."""

    def __init__(self, path: Path, folder: str):
        self.path = path
        self.folder = folder
        self.tar: tarfile.TarFile | None = None
        self.total = 0  # bytes read so far
        if path.is_dir():
            if (path / folder).is_dir():
                self.path = path / folder
        elif path.is_file():
            try:
                self.tar = tarfile.open(path, "r:*")
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise DataError(f"{path}: not a readable .tar.gz archive ({exc})") from None
        elif not path.exists():
            raise DataError(f"{path}: data path not found (data.path)")
        else:
            raise DataError(f"{path}: not a file or directory")

    def read(self, name: str) -> tuple[bytes, str]:
        """One file's bytes: regular files only, each at most :func:`member_limit`, and at
        most :data:`MAX_TOTAL_BYTES` in all (a FIFO would hang, /dev/zero or an
        archive member that inflates to gigabytes would exhaust memory)."""
        limit = min(member_limit(name), MAX_TOTAL_BYTES - self.total)
        data, where = (self._read_file(name, limit) if self.tar is None
                       else self._read_member(name, limit))
        self.total += len(data)
        return data, where

    def _too_large(self, where: str, size: int, limit: int) -> DataError:
        if limit < member_limit(where.rsplit("/", 1)[-1]):
            return DataError(f"{where}: the data files add up to more than "
                             f"{MAX_TOTAL_BYTES / 1e6:.0f} MB, far more than a CIFAR copy holds")
        return DataError(f"{where}: {size / 1e6:.1f} MB or more, larger than a CIFAR file of "
                         f"this name can be (at most {limit / 1e6:.0f} MB)")

    def _read_file(self, name: str, limit: int) -> tuple[bytes, str]:
        file = self.path / name
        where = str(file)
        try:
            return read_regular(file, limit), where
        except FileNotFoundError:
            raise DataError(f"{where}: missing; {self.path} does not look like a "
                            f"{self.folder} directory") from None
        except NotRegularFile:
            raise DataError(f"{where}: not a regular file (a FIFO, device or socket "
                            "cannot be a CIFAR batch)") from None
        except FileTooLarge as exc:
            raise self._too_large(where, exc.size, limit) from None
        except OSError as exc:
            raise DataError(f"{where}: cannot read ({exc.strerror or exc})") from None

    def _read_member(self, name: str, limit: int) -> tuple[bytes, str]:
        where = f"{self.path}:{self.folder}/{name}"
        try:
            info = self.tar.getmember(f"{self.folder}/{name}")
            if not info.isfile():
                raise DataError(f"{where}: not a regular file in the archive")
            if info.size > limit:  # the header's size: refused before inflating a byte
                raise self._too_large(where, info.size, limit)
            member = self.tar.extractfile(info)
            data = member.read(limit + 1) if member is not None else b""
        except KeyError:
            raise DataError(f"{where}: missing from the archive; is it the official "
                            f"{self.folder} .tar.gz?") from None
        except DataError:
            raise
        except (tarfile.TarError, OSError, EOFError, Exception) as exc:
            raise DataError(f"{where}: corrupted archive ({type(exc).__name__}: {exc})") from None
        if len(data) > limit:
            raise self._too_large(where, len(data), limit)
        return data, where

    def load(self, name: str) -> tuple[dict, str]:
        raw, where = self.read(name)
        return unpickle(raw, where), where

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()


def _names(d: dict, key: str, where: str, count: int) -> list[str]:
    names = d.get(key)
    if not isinstance(names, list) or len(names) != count:
        raise DataError(f"{where}: {key!r} must list {count} class names")
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]


def read_cifar10(path: Path) -> Splits:
    """Read a ``cifar-10-batches-py`` directory or ``cifar-10-python.tar.gz``."""
    src = _Source(path, "cifar-10-batches-py")
    try:
        meta, where = src.load("batches.meta")
        class_names = _names(meta, "label_names", where, 10)
        xs, ys = [], []
        for i in range(1, 6):
            d, where = src.load(f"data_batch_{i}")
            x, y = _batch_arrays(d, "labels", where)
            xs.append(x)
            ys.append(y)
        d, where = src.load("test_batch")
        x_test, y_test = _batch_arrays(d, "labels", where)
    finally:
        src.close()
    return Splits(np.concatenate(xs), np.concatenate(ys), x_test, y_test, class_names).check(str(path))


def cifar_classes(path: Path, label_mode: str | None = None) -> list[str]:
    """The class names of a CIFAR-10 copy (``label_mode`` None) or a CIFAR-100 one, read
    from its small meta file alone (no image is read); the same path errors as a read."""
    folder, meta, key, count = (("cifar-10-batches-py", "batches.meta", "label_names", 10)
                                if label_mode is None else
                                ("cifar-100-python", "meta", f"{label_mode}_label_names",
                                 100 if label_mode == "fine" else 20))
    src = _Source(path, folder)
    try:
        data, where = src.load(meta)
        return _names(data, key, where, count)
    finally:
        src.close()


def read_cifar100(path: Path, label_mode: str = "fine") -> Splits:
    """Read a ``cifar-100-python`` directory or ``cifar-100-python.tar.gz``."""
    src = _Source(path, "cifar-100-python")
    key = f"{label_mode}_labels"
    count = 100 if label_mode == "fine" else 20
    try:
        meta, where = src.load("meta")
        class_names = _names(meta, f"{label_mode}_label_names", where, count)
        d, where = src.load("train")
        x_train, y_train = _batch_arrays(d, key, where)
        d, where = src.load("test")
        x_test, y_test = _batch_arrays(d, key, where)
    finally:
        src.close()
    return Splits(x_train, y_train, x_test, y_test, class_names).check(str(path))


def keras_download(name: str, loader: Callable[[], tuple], class_names: list[str]) -> Splits:
    """Load through keras.datasets (downloads into ~/.keras/datasets)."""
    try:
        (x_train, y_train), (x_test, y_test) = loader()
    except Exception as exc:
        raise DataError(f"could not load {name} through keras.datasets "
                        f"({first_line(exc)}); "
                        f"without a network, pass a local copy: --set data.path=DIR_OR_TAR_GZ") from None
    return Splits(np.asarray(x_train, np.uint8), np.asarray(y_train).reshape(-1).astype(np.int64),
                  np.asarray(x_test, np.uint8), np.asarray(y_test).reshape(-1).astype(np.int64),
                  class_names).check(f"keras.datasets.{name}")


@dataclass
class Prepared:
    """Training, validation and test arrays after ``limit`` and the validation split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])  # type: ignore[return-value]


def prepare(splits: Splits, validation_split: float, limit: int | None, seed: int) -> Prepared:
    """Apply ``limit`` (first N of each split), then carve validation from train.

    The validation examples are a seeded random subset of the (limited)
    training split; the test split is never used for validation.
    """
    x_train, y_train = splits.x_train, splits.y_train
    x_test, y_test = splits.x_test, splits.y_test
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
        x_test, y_test = x_test[:limit], y_test[:limit]
    n = len(x_train)
    n_val = int(round(n * validation_split))
    if validation_split > 0:
        n_val = max(n_val, 1)
    if n - n_val < 1:
        raise DataError(f"validation_split {validation_split} leaves no training examples "
                        f"out of {n}")
    if n_val == 0:
        return Prepared(x_train, y_train, None, None, x_test, y_test, splits.class_names)
    order = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    return Prepared(x_train[train_idx], y_train[train_idx], x_train[val_idx], y_train[val_idx],
                    x_test, y_test, splits.class_names)


# Image folders and files (cifarkit.data.images), where the other readers are.
from cifarkit.data.images import read_image_folder, read_images  # noqa: E402,F401
