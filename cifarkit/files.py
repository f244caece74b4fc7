"""Reading files a user (or someone else) pointed cifarkit at, without hanging or
exhausting memory: regular files only, and never more than a known limit."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cifarkit.errors import CifarkitError


class NotRegularFile(OSError):
    """A FIFO, device or socket where a file was expected (reading it could hang)."""


class FileTooLarge(OSError):
    """A file larger than the caller's limit; ``size`` is what was seen (at least)."""

    def __init__(self, size: int):
        super().__init__(f"{size} bytes or more")
        self.size = size


def read_regular(path: Path, limit: int, follow: bool = True,
                 dir_fd: int | None = None) -> bytes:
    """``path``'s bytes: a regular file of at most ``limit`` bytes, else
    :class:`NotRegularFile` or :class:`FileTooLarge` (or the OSError of the open).
    The open does not block on a FIFO, and at most ``limit + 1`` bytes are read
    whatever the file claims. ``follow=False``: a symbolic link is refused (ELOOP).
    ``dir_fd``: ``path``'s name is opened in that open folder (not its path again)."""
    fd = os.open(Path(path).name if dir_fd is not None else path,
                 os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW),
                 dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(f"{path} is not a regular file")
        if info.st_size > limit:
            raise FileTooLarge(info.st_size)
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(len(data))
    return data


def unsafe_parent(path: Path) -> str | None:
    """Why ``path``'s folder chain lets another user swap what lies under it, or None.

    Each folder from ``path`` up to ``/`` must be owned by root or by this user, and
    writable by nobody else unless it has the sticky bit (as ``/tmp`` does): the checks
    ssh and sudo make of the folders above what they trust. ``path`` itself must not be
    a symbolic link."""
    path = Path(os.path.abspath(path))
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            return f"{path} is a symbolic link"
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    uid = os.getuid()
    for folder in (path, *path.parents):
        try:
            info = os.stat(folder)
        except OSError as exc:
            return f"{folder}: {exc.strerror or exc}"
        if info.st_uid not in (0, uid):
            return f"{folder} is owned by user id {info.st_uid}"
        if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
            return (f"{folder} can be written by other users (mode "
                    f"{stat.S_IMODE(info.st_mode):04o}, no sticky bit)")
    return None


def cache_folder(setting: str, backend: str) -> Path | None:
    """The compilation cache folder a setting names: "off" none, "auto" the user's cache
    folder (``$XDG_CACHE_HOME/cifarkit/<backend>``, else ``~/.cache/cifarkit/<backend>``),
    else that folder. It is created private to the user (mode 0700); one that others can
    write to is refused, since whoever writes to a compilation cache runs code as you."""
    if setting == "off":
        return None
    if setting == "auto":
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        folder = Path(base) / "cifarkit" / backend
    else:
        folder = Path(setting).expanduser().absolute()
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = os.lstat(folder)
    except OSError as exc:
        raise CifarkitError(f"train.compilation_cache: cannot create {folder} "
                            f"({exc.strerror or exc}); choose another folder or \"off\"") from None
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise CifarkitError(f"train.compilation_cache: {folder} can be written by other users "
                            f"(mode {info.st_mode & 0o777:o}), and a compilation cache others "
                            "can write to lets them run code as you; use a folder only you can "
                            "write to (chmod 700), or \"off\"")
    why = unsafe_parent(folder)
    if why is not None:
        raise CifarkitError(f"train.compilation_cache: {folder}: {why}, so another user could "
                            "replace the cache, and a compilation cache others can write to "
                            "lets them run code as you; use a folder of your own, or \"off\"")
    return folder


#: The members a ``.keras`` archive may hold, and the most bytes each may inflate to.
KERAS_MEMBERS = {"config.json": 16 << 20, "metadata.json": 1 << 20,
                 "model.weights.h5": 8 << 30}


def check_keras_archive(path: Path, data: bytes | None = None) -> None:
    """Refuse (``ValueError``) a ``.keras`` file that is not a regular file, or whose
    members are unknown or would inflate past their bound (read from the archive's
    headers before anything is inflated; zipfile never inflates past a member's
    declared size). A weights member may be at most 50 times the archive's size:
    weights barely compress. ``data``: the file's bytes, already read (then checked,
    and ``path`` only named)."""
    import io
    import zipfile

    if data is None:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path.name} is not a regular file")
        size, source = info.st_size, path
    else:
        size, source = len(data), io.BytesIO(data)
    with zipfile.ZipFile(source) as archive:
        for member in archive.infolist():
            name = member.filename
            bound = KERAS_MEMBERS.get(name)
            if bound is None:
                if name.startswith("assets/") and member.file_size <= 64 << 20:
                    continue
                raise ValueError(f"holds {name!r}, which is no part of a Keras model file")
            if name == "model.weights.h5":
                bound = min(bound, max(64 << 20, 50 * size))
            if member.file_size > bound:
                raise ValueError(f"its member {name} would inflate to {member.file_size:,} "
                                 f"bytes, more than the {bound:,} allowed")


def check_hdf5(handle) -> None:
    """Refuse (``ValueError``) an HDF5 file that would read other files: external links,
    datasets with external storage, virtual datasets."""
    import h5py

    def visit(group) -> None:
        for key in group:
            link = group.get(key, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise ValueError(f"{group.name}/{key} is an external link (to "
                                 f"{link.filename}); cifarkit reads no other file")
            if isinstance(link, h5py.SoftLink):
                continue
            item = group[key]
            if isinstance(item, h5py.Group):
                visit(item)
            elif isinstance(item, h5py.Dataset):
                if item.is_virtual:
                    raise ValueError(f"{item.name} is a virtual dataset (it reads other files)")
                if item.external:
                    raise ValueError(f"{item.name} keeps its data in an external file")

    visit(handle)


def check_model_file(path: Path) -> None:
    """A run's model.keras checked before Keras loads it: :func:`check_keras_archive`,
    then :func:`check_hdf5` on its weights (``ValueError`` naming what is wrong)."""
    import io
    import zipfile

    import h5py

    check_keras_archive(path)
    with zipfile.ZipFile(path) as archive:
        if "model.weights.h5" not in archive.namelist():
            return  # Keras says what is missing
        data = io.BytesIO(archive.read("model.weights.h5"))
    with h5py.File(data, "r") as handle:
        check_hdf5(handle)
