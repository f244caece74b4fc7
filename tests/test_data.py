"""CIFAR readers: directories, .tar.gz archives, hostile and broken files."""

import pickle

import numpy as np
import pytest

from cifarkit.data import Splits, prepare, read_cifar10, read_cifar100
from cifarkit.errors import DataError
from cifarkit.testing import cifar10_files, write_cifar10, write_cifar100, write_folder, write_tar_gz


def test_reads_cifar10_directory_and_parent(tmp_path):
    folder = write_cifar10(tmp_path, n_train=50, n_test=20)
    for path in (folder, tmp_path):
        s = read_cifar10(path)
        assert s.x_train.shape == (50, 32, 32, 3) and s.x_train.dtype == np.uint8
        assert s.x_test.shape == (20, 32, 32, 3) and s.y_test.shape == (20,)
        assert s.class_names[0] == "airplane" and len(s.class_names) == 10


def test_reads_official_tar_gz_in_place(tmp_path):
    archive = write_tar_gz(cifar10_files(50, 20), tmp_path / "cifar-10-python.tar.gz",
                           "cifar-10-batches-py")
    s = read_cifar10(archive)
    assert len(s.x_train) == 50
    assert not (tmp_path / "cifar-10-batches-py").exists()  # nothing extracted


def test_reads_cifar100_fine_and_coarse(tmp_path):
    folder = write_cifar100(tmp_path, n_train=120, n_test=30)
    fine, coarse = read_cifar100(folder, "fine"), read_cifar100(folder, "coarse")
    assert len(fine.class_names) == 100 and len(coarse.class_names) == 20
    assert fine.y_train.max() == 99 and coarse.y_train.max() == 19


def test_channel_layout_matches_cifar(tmp_path):
    files = cifar10_files(10, 10)
    raw = pickle.loads(files["test_batch"], encoding="bytes")[b"data"]
    folder = write_folder(files, tmp_path / "c")
    s = read_cifar10(folder)
    # CIFAR rows are 1024 red, then 1024 green, then 1024 blue values.
    assert s.x_test[0, 0, 0, 0] == raw[0, 0] and s.x_test[0, 0, 0, 1] == raw[0, 1024]


class _Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_pickle_that_runs_code_is_refused(tmp_path):
    files = cifar10_files(10, 10)
    victim = tmp_path / "pwned"
    files["data_batch_3"] = pickle.dumps({b"data": _Payload(str(victim)), b"labels": []})
    folder = write_folder(files, tmp_path / "c")
    with pytest.raises(DataError, match=r"data_batch_3: not a valid CIFAR batch file .*refusing.*open"):
        read_cifar10(folder)
    assert not victim.exists()


@pytest.mark.parametrize("mutate, fragment", [
    (lambda f: f.update(test_batch=f["test_batch"][:300]), "test_batch: corrupted or truncated"),
    (lambda f: f.update(data_batch_1=b"garbage"), "data_batch_1: corrupted or truncated"),
    (lambda f: f.pop("data_batch_5"), "data_batch_5: missing"),
    (lambda f: f.update(data_batch_2=pickle.dumps({b"data": np.zeros((4, 100), np.uint8),
                                                   b"labels": [0] * 4})), "shape (n, 3072)"),
    (lambda f: f.update(data_batch_2=pickle.dumps({b"data": np.zeros((4, 3072), np.uint8),
                                                   b"labels": [0] * 3})), "4 images but 'labels'"),
    (lambda f: f.update(data_batch_2=pickle.dumps({b"data": np.zeros((4, 3072), np.uint8),
                                                   b"labels": [0, 1, 2, 12]})), "labels must lie in [0, 9]"),
    (lambda f: f.update(test_batch=pickle.dumps([1, 2])), "expected a dict"),
])
def test_broken_files_are_data_errors(tmp_path, mutate, fragment):
    files = cifar10_files(20, 10)
    mutate(files)
    folder = write_folder(files, tmp_path / "c")
    with pytest.raises(DataError) as exc_info:
        read_cifar10(folder)
    assert fragment in str(exc_info.value)
    assert "\n" not in str(exc_info.value)


def test_bad_paths(tmp_path):
    with pytest.raises(DataError, match="data path not found"):
        read_cifar10(tmp_path / "missing")
    (tmp_path / "x.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(DataError, match="not a readable .tar.gz"):
        read_cifar10(tmp_path / "x.tar.gz")
    with pytest.raises(DataError, match="does not look like a cifar-10-batches-py directory"):
        read_cifar10(tmp_path)


def _splits(n=100, k=10):
    y = np.arange(n) % k
    return Splits(np.zeros((n, 32, 32, 3), np.uint8) + y[:, None, None, None].astype(np.uint8),
                  y, np.zeros((n, 32, 32, 3), np.uint8), y.copy(), [str(i) for i in range(k)])


def test_prepare_limits_and_carves_validation_from_train():
    p = prepare(_splits(), validation_split=0.1, limit=60, seed=1)
    assert (len(p.x_train), len(p.x_val), len(p.x_test)) == (54, 6, 60)
    # validation examples are training examples, disjoint from what is trained on
    seen = sorted(p.x_train[:, 0, 0, 0].tolist() + p.x_val[:, 0, 0, 0].tolist())
    assert seen == sorted((np.arange(60) % 10).tolist())
    again = prepare(_splits(), validation_split=0.1, limit=60, seed=1)
    assert np.array_equal(p.y_val, again.y_val)
    assert prepare(_splits(), 0.0, None, 0).x_val is None
    with pytest.raises(DataError, match="leaves no training examples"):
        prepare(_splits(), 0.5, 1, 0)


def test_a_batch_file_that_is_a_fifo_or_a_device_is_refused_at_once(tmp_path):
    import os
    import time

    root = write_cifar10(tmp_path, n_train=20, n_test=10)
    (root / "data_batch_2").unlink()
    os.mkfifo(root / "data_batch_2")  # reading it would hang
    started = time.monotonic()
    with pytest.raises(DataError, match=r"data_batch_2: not a regular file"):
        read_cifar10(root)
    assert time.monotonic() - started < 5
    os.unlink(root / "data_batch_2")
    os.symlink("/dev/zero", root / "data_batch_2")  # would read until memory runs out
    with pytest.raises(DataError, match=r"data_batch_2: not a regular file"):
        read_cifar10(root)


def test_batch_files_and_archive_members_are_bounded(tmp_path, monkeypatch):
    """A batch file, an archive member (checked by its header, before inflating) and
    the sum: each bounded near the real sizes."""
    import cifarkit.data as data

    root = write_cifar10(tmp_path / "dir", n_train=20, n_test=10)
    with (root / "data_batch_3").open("ab") as f:
        f.truncate(data.BATCH_LIMIT_BYTES + 1)  # sparse: no disk used
    with pytest.raises(DataError, match=r"data_batch_3: 40.0 MB or more, larger than a CIFAR "
                                        r"file of this name can be \(at most 40 MB\)"):
        read_cifar10(root)

    files = cifar10_files(20, 10)
    files["data_batch_1"] = bytes(data.BATCH_LIMIT_BYTES + 1)  # inflates from ~40 KB
    archive = write_tar_gz(files, tmp_path / "bomb.tar.gz", "cifar-10-batches-py")
    assert archive.stat().st_size < 1_000_000
    with pytest.raises(DataError, match=r"bomb.tar.gz:cifar-10-batches-py/data_batch_1: "
                                        r"40.0 MB or more"):
        read_cifar10(archive)
    monkeypatch.setattr(data, "MAX_TOTAL_BYTES", 3 * len(cifar10_files(20, 10)["data_batch_1"]))
    (root / "data_batch_3").write_bytes(cifar10_files(20, 10)["data_batch_3"])
    with pytest.raises(DataError, match=r"the data files add up to more than"):
        read_cifar10(root)


@pytest.mark.parametrize("mode, values, expected", [
    ("I;16", [0, 257, 32896, 65535], [0, 1, 128, 255]),      # 16-bit grayscale PNG
    ("I", [0, 257, 32896, 65535], [0, 1, 128, 255]),         # the same read as 32-bit
    ("I", [0, 1, 128, 255], [0, 1, 128, 255]),               # 32-bit holding 8-bit values
    ("F", [0.0, 0.25, 0.5, 1.0], [0, 64, 128, 255]),         # float 0-1
])
def test_high_bit_depth_images_are_scaled_not_clipped(tmp_path, mode, values, expected):
    from PIL import Image

    from cifarkit.data import read_images

    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
    pixels = np.array(values, dtype=dtype).reshape(2, 2)
    img = Image.fromarray(pixels, mode) if mode != "I;16" else Image.fromarray(pixels)
    path = tmp_path / ("x.png" if mode == "I;16" else "x.tiff")
    img.save(path)
    out = read_images([path], 2)
    assert out.shape == (1, 2, 2, 3)
    assert out[0, :, :, 0].ravel().tolist() == expected
    assert (out[..., 0] == out[..., 2]).all()


def test_an_image_with_values_cifarkit_cannot_map_is_one_line(tmp_path):
    from PIL import Image

    from cifarkit.data import read_images

    path = tmp_path / "x.tiff"
    Image.fromarray(np.array([[0, 70000]], np.int32), "I").save(path)
    with pytest.raises(DataError, match=r"x.tiff: I image with values from 0 to 70000"):
        read_images([path], 2)
