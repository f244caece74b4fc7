#!/usr/bin/env python3
"""CIFAR-10 (JPEG copy) tarball -> the standard ``cifar-10-batches-py`` folder.

    python benchmarks/cifar10_jpeg.py cifar10-jpeg.tar.gz OUT_DIR

For machines without ../shared (the GPU check): reads
``cifar10-jpeg/{train,test}/<class>/*.jpg`` from the tarball and writes
OUT_DIR/cifar-10-batches-py with the same image order as
../shared/tools/cifar10_batches.py (sorted by class and file name, then a
permutation with seed 1 for train and 2 for test), so the validation split
is the same images on every machine. Needs numpy and Pillow; skips the work
when OUT_DIR/cifar-10-batches-py/.complete exists.
"""

from __future__ import annotations

import io
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def read(archive: Path) -> dict[str, list]:
    splits: dict[str, list] = {"train": [], "test": []}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and member.name.endswith(".jpg") and len(parts) == 4:
                _, split, cls, name = parts
                splits[split].append((CLASSES.index(cls), f"{cls}_{name}",
                                      tar.extractfile(member).read()))
    return splits


def arrays(items: list, seed: int):
    items = sorted(items, key=lambda t: t[:2])
    items = [items[i] for i in np.random.default_rng(seed).permutation(len(items))]
    data = np.stack([np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), np.uint8)
                     .transpose(2, 0, 1).reshape(-1) for _, _, raw in items])
    return data, [label for label, _, _ in items], [name.encode() for _, name, _ in items]


def write(path: Path, obj: dict) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=4))


def main(archive: Path, out: Path) -> Path:
    target = out / "cifar-10-batches-py"
    if (target / ".complete").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    splits = read(archive)
    x, y, names = arrays(splits["train"], 1)
    x_test, y_test, names_test = arrays(splits["test"], 2)
    write(target / "batches.meta", {b"label_names": [c.encode() for c in CLASSES],
                                    b"num_cases_per_batch": 10000, b"num_vis": 3072})
    for b in range(5):
        part = slice(b * 10000, (b + 1) * 10000)
        write(target / f"data_batch_{b + 1}", {b"batch_label": f"training batch {b + 1} of 5".encode(),
                                               b"labels": y[part], b"data": x[part],
                                               b"filenames": names[part]})
    write(target / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": y_test,
                                  b"data": x_test, b"filenames": names_test})
    (target / ".complete").touch()
    return target


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(main(Path(sys.argv[1]), Path(sys.argv[2])))
