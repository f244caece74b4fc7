from pathlib import Path

import numpy as np

import cifarkit
from cifarkit import DataError, Splits


def npz_arrays(path: Path):
    """Your own images from one .npz file: x_train, y_train, x_test, y_test, class_names.

    Args:
        path: the .npz file (written with numpy.savez; images uint8 (n, h, w, 3)).
    """
    try:
        with np.load(path, allow_pickle=False) as arrays:  # never unpickle a data file
            parts = {k: arrays[k] for k in ("x_train", "y_train", "x_test", "y_test",
                                            "class_names")}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    except KeyError as exc:
        raise DataError(f"{path}: missing array {exc}") from None
    return Splits(parts["x_train"], parts["y_train"].astype(np.int64), parts["x_test"],
                  parts["y_test"].astype(np.int64), [str(c) for c in parts["class_names"]])


@cifarkit.hookimpl
def register_datasets(register):
    register(npz_arrays)
