"""Your own images: a folder of class folders (train/ and test/), read with Pillow
into the 8-bit RGB arrays every dataset gives, and single image files for predict."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cifarkit.data import Splits
from cifarkit.errors import DataError, first_line


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _rgb8(img, path: Path):
    """``img`` as 8-bit RGB, scaled, not clipped: 16-bit images (``I;16*``, and ``I``
    up to 65,535) are divided by 257, 32-bit float ones (``F``) read as 0-1 or 0-255;
    anything else Pillow converts (palette, grayscale, alpha dropped, CMYK...)."""
    from PIL import Image

    mode = img.mode
    if mode not in ("I", "F") and not mode.startswith("I;16"):
        return img.convert("RGB")
    values = np.asarray(img, dtype=np.float64)
    top = float(values.max()) if values.size else 0.0
    if mode.startswith("I;16") or (mode == "I" and 255 < top <= 65535):
        values = values / 257.0
    elif mode == "F" and 0.0 <= float(values.min()) and top <= 1.0:
        values = values * 255.0
    if values.size and (float(values.min()) < 0 or float(values.max()) > 255.0 + 1e-6
                        or not np.isfinite(values).all()):
        raise DataError(f"{path}: {mode} image with values from {float(values.min()):g} to "
                        f"{top:g}, which cifarkit cannot map to 8-bit colour (expected 0-255, "
                        "0-65535 or 0-1); save it as 8- or 16-bit PNG or as JPEG")
    gray = np.rint(values).astype(np.uint8)
    return Image.fromarray(np.stack([gray] * 3, axis=-1), "RGB")


def _read_image(path: Path, size: int) -> np.ndarray:
    """One image file as uint8 (size, size, 3): decoded, RGB, resized."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = _rgb8(img, path)
            if img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: image too large to decode safely ({first_line(exc)})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: unreadable image ({first_line(exc)})") from None


def read_images(paths: list[Path], size: int) -> np.ndarray:
    """Decode many image files into one uint8 array (n, size, size, 3)."""
    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, path in enumerate(paths):
        out[i] = _read_image(path, size)
    return out


def _class_folders(split_dir: Path) -> dict[str, list[Path]]:
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: missing; an image folder needs train/<class>/ and "
                        "test/<class>/ subfolders")
    classes = {}
    for folder in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in folder.iterdir()
                       if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{folder}: empty class folder (no {', '.join(IMAGE_SUFFIXES)} files)")
        classes[folder.name] = files
    if len(classes) < 2:
        raise DataError(f"{split_dir}: found {len(classes)} class folder(s); need at least 2")
    return classes


def read_image_folder(path: Path, image_size: int = 32) -> Splits:
    """Read ``path/train/<class>/*`` and ``path/test/<class>/*`` (JPEG or PNG, any size)."""
    if not path.exists():
        raise DataError(f"{path}: data path not found (data.path)")
    if not path.is_dir():
        raise DataError(f"{path}: not a directory (an image folder needs train/ and test/)")
    train = _class_folders(path / "train")
    test = _class_folders(path / "test")
    class_names = sorted(train)
    unknown = sorted(set(test) - set(train))
    if unknown:
        raise DataError(f"{path / 'test'}: class folder(s) {', '.join(unknown)} are not in "
                        f"{path / 'train'} ({', '.join(class_names)})")

    def split(classes: dict[str, list[Path]]):
        files = [f for name in class_names for f in classes.get(name, [])]
        labels = np.array([class_names.index(name) for name in class_names
                           for _ in classes.get(name, [])], dtype=np.int64)
        return read_images(files, image_size), labels

    x_train, y_train = split(train)
    x_test, y_test = split(test)
    return Splits(x_train, y_train, x_test, y_test, class_names).check(str(path))
