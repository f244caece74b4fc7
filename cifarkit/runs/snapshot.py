"""A run folder read once: :func:`open_run` gives a :class:`RunSnapshot`, checked.

A command opens a run folder once. Each file it needs is read once (through a
descriptor of the folder, never following a link, regular files only, bounded
in size), checked on those bytes, and every later use takes the checked bytes or
a private copy made from them: recipe.toml and summary.json are parsed from the
bytes read; model.keras and the checkpoint's files are copied into a private
folder (mode 0700) while they are hashed, checked there (the archive's members,
HDF5 external links and storage, the state's schema) and loaded from there. The
run folder's path is never read again, so a file swapped after the check is
never used.

The same read decides whether the folder is the user's own: its manifest
(:mod:`cifarkit.runs.manifest`) must be signed under the user's key and list
the digest of every file read.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifarkit.errors import OutputError, first_line, printable
from cifarkit.files import check_model_file
from cifarkit.runs import folder, manifest, trust
from cifarkit.runs.lock import is_locked

#: The most bytes copied of a model or a checkpoint file.
MODEL_LIMIT = 8 << 30


class _Refused(Exception):
    """A file of the folder that cannot be used (the reason, in a few words)."""


def _open_at(dir_fd: int, name: str, directory: bool = False) -> int:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (
        os.O_DIRECTORY if directory else os.O_NONBLOCK)
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _Refused("a symbolic link or not a " + ("folder" if directory else "file")
                           + "; cifarkit reads no link in a run folder") from None
        if exc.errno == errno.ENOENT:
            raise
        raise _Refused(exc.strerror or str(exc)) from None
    info = os.fstat(fd)
    if not (stat.S_ISDIR if directory else stat.S_ISREG)(info.st_mode):
        os.close(fd)
        raise _Refused("not a folder" if directory else "not a regular file")
    return fd


def _copy(src_fd: int, target: Path, limit: int) -> str:
    """Copy an open file into ``target`` (a new private file); return its SHA-256."""
    digest, copied = hashlib.sha256(), 0
    out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(src_fd, "rb", closefd=True) as src, os.fdopen(out, "wb") as dst:
        for block in iter(lambda: src.read(1 << 20), b""):
            copied += len(block)
            if copied > limit:
                raise _Refused(f"more than {limit:,} bytes")
            digest.update(block)
            dst.write(block)
    return digest.hexdigest()


@dataclass
class RunSnapshot:
    """What a command read of one run folder (see the module's doc).

    Attributes:
        path: the run folder.
        summary: summary.json, checked (``{}`` for a run killed before writing one).
        recipe_text, recipe_doc: recipe.toml as read and as parsed (None: absent).
        own: whether the folder is the user's own: its manifest is signed under the
            user's key and lists every file read with the digest read.
        foreign_file, why_foreign: the first file that made it foreign, and why.
        model_path: the checked private copy of model.keras (when asked for).
        restore: the newest readable checkpoint (when asked for), its files
            copied privately: a :class:`cifarkit.runs.checkpoint.Restore`.
        checkpoint_problem: why no checkpoint was readable (a foreign folder's is
            raised once the folder is vouched for; an own folder's at once).
        digests: the SHA-256 of each file read, by its name in the manifest.
    """

    path: Path
    summary: dict[str, Any] = field(default_factory=dict)
    recipe_text: str | None = None
    recipe_doc: dict[str, Any] | None = None
    own: bool = False
    foreign_file: Path | None = None
    why_foreign: str = ""
    model_path: Path | None = None
    restore: Any = None
    digests: dict[str, str] = field(default_factory=dict)
    manifest_files: dict[str, list[str]] | None = None
    private: Path | None = None
    checkpoint_problem: str | None = None

    def close(self) -> None:
        if self.private is not None:
            shutil.rmtree(self.private, ignore_errors=True)
            self.private = None

    def __enter__(self) -> "RunSnapshot":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _private(self) -> Path:
        if self.private is None:
            self.private = Path(tempfile.mkdtemp(prefix="cifarkit-run-"))
        return self.private


def _foreign(snap: RunSnapshot, name: str, why: str) -> None:
    if snap.own or snap.foreign_file is None:
        snap.own, snap.foreign_file, snap.why_foreign = False, snap.path / name, why


def _check(snap: RunSnapshot, name: str, digest: str) -> None:
    """Compare a file read with its manifest entry (the folder turns foreign if it differs)."""
    snap.digests[manifest.entry_name(name)] = digest
    files = snap.manifest_files
    if files is not None and digest not in files.get(manifest.entry_name(name), []):
        _foreign(snap, name, "differs from what your cifarkit wrote there (the run folder's "
                             "signed manifest): it was changed, or comes from elsewhere")


def _read(snap: RunSnapshot, dir_fd: int, name: str) -> bytes | None:
    """A small file of the folder, read once and bounded (:func:`folder.read_bytes`, by
    name in the open folder); None when absent."""
    try:
        return folder.read_bytes(snap.path / name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None


def _read_signature(snap: RunSnapshot, dir_fd: int) -> None:
    key = trust.run_key(create=False)
    raw = _read(snap, dir_fd, manifest.SIGNATURE_NAME)
    text = raw.decode("utf-8", "replace") if raw is not None else ""
    snap.manifest_files = manifest.verify(key, text)
    snap.own = snap.manifest_files is not None
    if not snap.own:
        snap.foreign_file = snap.path / manifest.SIGNATURE_NAME
        snap.why_foreign = ("this run directory was not made by your cifarkit (no manifest "
                            "signed with your key)")
        snap.manifest_files = None


def _read_recipe(snap: RunSnapshot, dir_fd: int) -> None:
    where = snap.path / "recipe.toml"
    raw = _read(snap, dir_fd, "recipe.toml")
    if raw is None:
        return
    snap.recipe_text = folder.decode(where, raw)
    snap.recipe_doc = folder.parse_toml(where, raw)
    key = trust.run_key(create=False)
    if key is not None and snap.manifest_files is not None:
        digest = trust.recipe_digest(key, snap.recipe_text)
        snap.digests["recipe.toml"] = digest
        if digest not in snap.manifest_files.get("recipe.toml", []):
            _foreign(snap, "recipe.toml", "a path, plugin or other text in it was edited since "
                                          "your cifarkit wrote it")


def _read_summary(snap: RunSnapshot, dir_fd: int, resumable: bool) -> None:
    where = snap.path / "summary.json"
    raw = _read(snap, dir_fd, "summary.json")
    if raw is None:
        if resumable:
            return  # killed before its first summary.json: resumable from its recipe
        raise OutputError(f"{snap.path}: not a run directory (no summary.json)")
    _check(snap, "summary.json", manifest.sha256(raw))
    summary = folder.check_summary(where, folder.parse_json(where, raw))
    if summary.get("status") == "running" and not is_locked(snap.path):
        summary["status"] = "crashed"
    snap.summary = summary


def _copy_model(snap: RunSnapshot, dir_fd: int) -> None:
    import zipfile

    where = snap.path / "model.keras"
    try:
        fd = _open_at(dir_fd, "model.keras")
    except FileNotFoundError:
        raise OutputError(f"{snap.path}: no model.keras (the run did not get far enough to "
                          "save one)") from None
    except _Refused as exc:
        raise OutputError(f"{printable(str(where))}: {exc}") from None
    copy = snap._private() / "model.keras"
    try:
        digest = _copy(fd, copy, MODEL_LIMIT)
    except _Refused as exc:
        raise OutputError(f"{printable(str(where))}: refused ({exc})") from None
    _check(snap, "model.keras", digest)
    if not zipfile.is_zipfile(copy):
        raise OutputError(f"{where}: not a Keras model file (damaged or truncated: a .keras "
                          "file is a zip archive)")
    try:
        check_model_file(copy)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise OutputError(f"{where}: refused ({first_line(exc)})") from None
    snap.model_path = copy


def _copy_slot(snap: RunSnapshot, dir_fd: int, slot: str) -> Path | None:
    """One checkpoint folder's files, copied privately and checked against the manifest;
    None when the folder is absent."""
    try:
        slot_fd = _open_at(dir_fd, slot, directory=True)
    except FileNotFoundError:
        return None
    target = snap._private() / slot
    target.mkdir(mode=0o700)
    try:
        names = sorted(os.listdir(slot_fd))
        if len(names) > 64:
            raise _Refused(f"holds {len(names)} files; a checkpoint has a few")
        for name in names:
            try:
                fd = _open_at(slot_fd, name)
            except _Refused as exc:
                raise _Refused(f"{name}: {exc}") from None
            _check(snap, f"{slot}/{name}", _copy(fd, target / name, MODEL_LIMIT))
    finally:
        os.close(slot_fd)
    return target


def _copy_checkpoint(snap: RunSnapshot, dir_fd: int) -> None:
    """The newest checkpoint that reads through (see :func:`cifarkit.runs.checkpoint.verify`);
    a damaged newest one falls back to the previous; none readable is one line."""
    from cifarkit.runs import checkpoint

    problems = []
    for slot in (checkpoint.CURRENT, checkpoint.PREVIOUS):
        try:
            copied = _copy_slot(snap, dir_fd, slot)
            if copied is None:
                continue
            state = checkpoint.verify(copied)
        except Exception as exc:  # a damaged or hostile file: the next slot, else one line
            problems.append(f"{slot}: {first_line(exc)}")
            continue
        if snap.restore is None:
            snap.restore = checkpoint.Restore(copied, state, snap.path / slot)
    if snap.restore is None and problems:
        snap.checkpoint_problem = (f"{snap.path}: no readable checkpoint "
                                   f"({'; '.join(problems)}); start the run again")
        if snap.own:  # a foreign folder is refused as foreign first (trust.check_resumable)
            raise OutputError(snap.checkpoint_problem)


def open_run(run_dir: Path, *, model: bool = False, checkpoint: bool = False,
             resumable: bool = False) -> RunSnapshot:
    """Read ``run_dir`` once (see the module's doc). ``model``: copy and check model.keras;
    ``checkpoint``: copy and check the newest readable checkpoint; ``resumable``: a folder
    without summary.json is a run killed before its first summary (``summary`` is ``{}``).
    Every problem is one line (:class:`cifarkit.errors.OutputError`)."""
    snap = RunSnapshot(Path(run_dir).absolute())
    try:
        dir_fd = os.open(snap.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        raise OutputError(f"{snap.path}: not a run directory (not found)") from None
    try:
        _read_signature(snap, dir_fd)
        _read_recipe(snap, dir_fd)
        _read_summary(snap, dir_fd, resumable)
        if model:
            _copy_model(snap, dir_fd)
        if checkpoint:
            _copy_checkpoint(snap, dir_fd)
    except BaseException:
        snap.close()
        raise
    finally:
        os.close(dir_fd)
    return snap
