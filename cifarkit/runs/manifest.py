"""The signed manifest of a run folder: what this user's cifarkit wrote there, file by file.

``RUN_DIR/.signature`` is a JSON document::

    {"version": 3, "files": {"summary.json": ["<sha256>"], ...}, "mac": "<hmac>"}

``files`` maps each file the run wrote (by its path inside the run folder;
checkpoint files as ``checkpoint/NAME`` whichever of the two checkpoint
folders holds them) to the SHA-256 digests it may have. ``recipe.toml`` is
the exception: its entry is the digest of what in the recipe can read or
run something (:func:`cifarkit.runs.trust.recipe_digest`), so editing a
number (more epochs) keeps a run folder the user's own. ``mac`` is an
HMAC-SHA256 of ``files`` under the user's private key
(:mod:`cifarkit.runs.trust`): without the key nobody can write a manifest
that passes.

The run keeps its manifest current as it writes: every file goes through
:func:`cifarkit.runs.artifacts.atomic_write` (or the model and checkpoint
writers), which records the new file's digest *before* renaming it into
place, alongside the digest it replaces, and drops the old digest at the
next write once the rename is done. A run killed at any moment leaves a
folder whose manifest still vouches for every file in it.

Not covered: ``run.log`` (appended line by line; nothing reads it back),
``.lock``, and what plugins and callbacks write (their own files).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

VERSION = 3
SIGNATURE_NAME = ".signature"
#: The checkpoint folders, whose files share one entry per file name.
CHECKPOINT_FOLDERS = ("checkpoint", ".checkpoint-previous", ".checkpoint-pending")
#: Files the manifest does not cover.
UNSIGNED = ("run.log", ".lock", SIGNATURE_NAME)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    """The SHA-256 of a file this process just wrote (never through a link)."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def entry_name(rel: str) -> str:
    """The manifest's name for a path inside the run folder (checkpoint files by slot)."""
    head, _, rest = rel.partition("/")
    if head in CHECKPOINT_FOLDERS and rest:
        return f"checkpoint/{rest}"
    return rel


def _mac(key: bytes, files: dict[str, list[str]]) -> str:
    text = json.dumps(files, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hmac.new(key, b"cifarkit-run-manifest-3\0" + text, hashlib.sha256).hexdigest()


def verify(key: bytes | None, text: str) -> dict[str, list[str]] | None:
    """The manifest's ``files`` if ``text`` is a manifest signed under ``key``, else None."""
    if key is None:
        return None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
        return None
    files = doc.get("files") if isinstance(doc, dict) else None
    if (not isinstance(files, dict) or doc.get("version") != VERSION
            or not isinstance(doc.get("mac"), str)
            or not all(isinstance(k, str) and isinstance(v, list)
                       and all(isinstance(d, str) for d in v) for k, v in files.items())):
        return None
    return files if hmac.compare_digest(doc["mac"], _mac(key, files)) else None


class Manifest:
    """The manifest of one run folder this process writes into (see the module's doc)."""

    def __init__(self, run_dir: Path, key: bytes, files: dict[str, list[str]] | None = None):
        self.run_dir, self._key = Path(run_dir), key
        self.files: dict[str, list[str]] = {k: list(v) for k, v in (files or {}).items()}
        self._settled: set[str] = set()

    def text(self) -> str:
        files = {k: v for k, v in self.files.items() if v}
        return json.dumps({"version": VERSION, "files": files, "mac": _mac(self._key, files)},
                          sort_keys=True) + "\n"

    def _write(self) -> None:
        for name in self._settled:  # renames done: the replaced digests no longer pass
            self.files[name] = self.files.get(name, [])[:1]
        self._settled.clear()
        from cifarkit.runs.artifacts import write_raw

        write_raw(self.run_dir / SIGNATURE_NAME, self.text().encode("utf-8"))

    def digest_of(self, rel: str, raw: bytes) -> str:
        """The entry a file with content ``raw`` gets (recipe.toml: its guarded digest)."""
        if rel == "recipe.toml":
            from cifarkit.runs.trust import recipe_digest

            return recipe_digest(self._key, raw.decode("utf-8", "replace"))
        return sha256(raw)

    def will_write(self, rel: str, digest: str) -> str:
        """Record that ``rel`` is about to get content ``digest`` (its old content still
        passes until :meth:`settled`); returns the entry's name."""
        name = entry_name(rel)
        self.files[name] = [digest, *[d for d in self.files.get(name, []) if d != digest]]
        self._write()
        return name

    def settled(self, name: str) -> None:
        """The file is in place: its replaced digest is dropped at the next write."""
        self._settled.add(name)

    def forget(self, names) -> None:
        """Files removed from the folder."""
        for name in names:
            self.files.pop(name, None)
        self._write()

    def keep_only(self, name: str, digests: list[str]) -> None:
        self.files[name] = list(digests)

    def flush(self) -> None:
        self._write()


#: The run folders this process writes and signs, by absolute path.
_OPEN: dict[Path, Manifest] = {}


def start_signing(manifest: Manifest) -> None:
    _OPEN[manifest.run_dir.absolute()] = manifest
    manifest.flush()


def stop_signing(run_dir: Path) -> None:
    manifest = _OPEN.pop(Path(run_dir).absolute(), None)
    if manifest is not None:
        manifest.flush()


def signing(path: Path) -> tuple[Manifest, str] | None:
    """The manifest that covers ``path`` (a file this process is writing), with the
    path's name inside its run folder; None outside any signed run folder."""
    path = Path(path).absolute()
    for folder in path.parents:
        manifest = _OPEN.get(folder)
        if manifest is not None:
            rel = path.relative_to(folder).as_posix()
            return None if rel in UNSIGNED else (manifest, rel)
    return None
