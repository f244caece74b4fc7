"""Run and sweep folders are untrusted input: the one place their files are read and written.

A run directory may come from anywhere (unpacked, shared, edited by someone
else), so every command reads its files the same way:

* regular files only, opened without following a symlink (``O_NOFOLLOW``) and
  without blocking on a FIFO; devices, sockets and folders are refused;
* never more than a per-file bound of bytes (:data:`LIMITS`), whatever the file claims;
* strict parsing: UTF-8, JSON / TOML / CSV nested at most :data:`MAX_DEPTH` deep,
  CSV fields at most :data:`MAX_FIELD` characters.

A malformed or hostile piece is one :class:`UnreadableFile` (an ``OutputError``:
one line, exit status 2) naming the file and what is wrong with it.

Writes go through :func:`subfolder` (a folder inside the run directory that
is itself a real folder, never a symlink out of it) and
:func:`cifarkit.runs.artifacts.atomic_write` (a temporary file renamed over
the target, so a symlink planted at the target is replaced, not followed);
appends (run.log) and the lock are opened with ``O_NOFOLLOW``.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import stat
from pathlib import Path
from typing import Any

from cifarkit.errors import OutputError, PluginError, printable
from cifarkit.files import FileTooLarge, NotRegularFile, read_regular

import tomllib

KB, MB = 1 << 10, 1 << 20
#: The most bytes read of each file a run or sweep folder holds.
LIMITS = {"summary.json": 4 * MB, "sweep.json": 16 * MB, "state.json": 64 * MB,
          "recipe.toml": 1 * MB, "metrics.csv": 16 * MB, "timing.csv": 16 * MB,
          "evaluation.json": 16 * MB, ".signature": 1 * MB, ".lock": 200}
DEFAULT_LIMIT = 16 * MB
#: How deep JSON and TOML documents may nest.
MAX_DEPTH = 32
#: The longest CSV field read.
MAX_FIELD = 4 * KB


class UnreadableFile(OutputError):
    """A file of a run or sweep folder that cannot be read safely (one line)."""


def _fail(path: Path, why: str) -> UnreadableFile:
    return UnreadableFile(f"{printable(str(path))}: unreadable ({why})")


def is_regular(path: Path) -> bool:
    """Whether ``path`` is a regular file itself (not a symlink, FIFO, device or folder)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def is_folder(path: Path) -> bool:
    """Whether ``path`` is a folder itself (not a symlink to one)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def read_bytes(path: Path, limit: int | None = None, dir_fd: int | None = None) -> bytes:
    """``path``'s bytes: a regular file, not through a symlink, at most ``limit`` bytes
    (default: :data:`LIMITS` by file name); ``dir_fd``: opened by name in that open
    folder. ``FileNotFoundError`` passes through (callers word a missing file);
    everything else is :class:`UnreadableFile`."""
    path = Path(path)
    limit = limit if limit is not None else LIMITS.get(path.name, DEFAULT_LIMIT)
    try:
        return read_regular(path, limit, follow=False, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except NotRegularFile:
        raise _fail(path, "not a regular file") from None
    except FileTooLarge as exc:
        raise _fail(path, f"{exc.size:,} bytes or more, above the {limit:,} allowed") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _fail(path, "a symbolic link; cifarkit reads no link in a run folder") from None
        raise _fail(path, exc.strerror or str(exc)) from None


def read_head(path: Path, n: int) -> bytes:
    """The first ``n`` bytes of a regular file (not through a link, never blocking)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise _fail(path, "not a regular file")
        return f.read(n)


def read_text(path: Path, limit: int | None = None) -> str:
    return decode(path, read_bytes(path, limit))


def decode(path: Path, data: bytes) -> str:
    """``data`` (read from ``path``) as UTF-8 text, or one line naming the file."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(path, f"not UTF-8 text at byte {exc.start}") from None


def _check_depth(path: Path, text: str, opening: str, closing: str) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH` before a recursive parser sees it
    (strings skipped; a rough bound that never under-counts a real document's depth)."""
    depth, in_string, escaped, quote = 0, False, False, ""
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\" and quote == '"':
                escaped = True
            elif ch == quote:
                in_string = False
        elif ch in "\"'" and (quote := ch):
            in_string = True
        elif ch in opening:
            depth += 1
            if depth > MAX_DEPTH:
                raise _fail(path, f"nested more than {MAX_DEPTH} levels deep")
        elif ch in closing:
            depth -= 1


def read_json(path: Path, limit: int | None = None, kind: type | None = dict) -> Any:
    """A JSON document of a run folder (see :func:`read_bytes`), of type ``kind``."""
    return parse_json(path, read_bytes(path, limit), kind)


def parse_json(path: Path, data: bytes, kind: type | None = dict) -> Any:
    """JSON bytes read from ``path`` (named in errors), of type ``kind``."""
    text = decode(path, data)
    _check_depth(path, text, "[{", "]}")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _fail(path, f"not JSON: {str(exc).splitlines()[0][:200]}") from None
    if kind is not None and not isinstance(doc, kind):
        raise _fail(path, f"a JSON {type(doc).__name__} where a {kind.__name__} belongs")
    return doc


def read_toml(path: Path, limit: int | None = None) -> dict[str, Any]:
    """A TOML document of a run folder (see :func:`read_bytes`)."""
    return parse_toml(path, read_bytes(path, limit))


def parse_toml(path: Path, data: bytes) -> dict[str, Any]:
    """TOML bytes read from ``path`` (named in errors)."""
    text = decode(path, data)
    if "\x00" in text:
        raise _fail(path, "holds a NUL character")
    _check_depth(path, text, "[{", "]}")
    try:
        return tomllib.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _fail(path, f"not TOML: {str(exc).splitlines()[0][:200]}") from None


def read_csv(path: Path, limit: int | None = None) -> list[dict[str, str]]:
    """The rows of a CSV file of a run folder; fields at most :data:`MAX_FIELD` long."""
    text = read_text(path, limit)
    rows = []
    try:
        for row in csv.DictReader(io.StringIO(text, newline="")):
            for key, value in row.items():
                for part in (key, value) if not isinstance(value, list) else (key, *value):
                    if isinstance(part, str) and len(part) > MAX_FIELD:
                        raise _fail(path, f"a field longer than {MAX_FIELD:,} characters")
            rows.append(row)
    except csv.Error as exc:
        raise _fail(path, f"not CSV: {exc}") from None
    return rows


def subfolder(parent: Path, name: str) -> Path:
    """``parent / name`` as a real folder inside ``parent`` (created if missing): a
    symlink, or a file, there is refused in one line instead of being written through."""
    path = Path(parent) / name
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except OSError as exc:
        raise OutputError(f"{printable(str(path))}: cannot create the folder "
                          f"({exc.strerror or exc})") from None
    if not is_folder(path):
        raise OutputError(f"{printable(str(path))}: not a folder of its own (a symbolic link "
                          "or a file); cifarkit writes through no link in a run folder: "
                          "remove it, or name another place with --output")
    return path


def open_append(path: Path):
    """``path`` opened for appending text, never through a symlink, regular files only."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
                 | os.O_NONBLOCK, 0o644)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        raise OSError(errno.EINVAL, f"{path} is not a regular file" if info.st_nlink <= 1
                      else f"{path} has {info.st_nlink} hard links; cifarkit appends to no "
                      "file that is also elsewhere")
    return os.fdopen(fd, "a", encoding="utf-8", buffering=1)


_NUMBER = (int, float)
#: The type each field of summary.json must have when present (None is always allowed).
SUMMARY_FIELDS: dict[str, Any] = {
    "status": str, "recipe": str, "recipe_file": str, "run_dir": str, "started_at": str,
    "finished_at": str, "dataset": str, "model": str, "strategy": str, "backend": str,
    "mixed_precision": str, "test_tta": str, "error": str, "resume_command": str, "host": str,
    "best_monitor": str, "epochs_run": int, "epochs_planned": int, "train_examples": int,
    "validation_examples": int, "test_examples": int, "parameters": int, "replicas": int,
    "workers": int, "batch_size": int, "pid": int, "resume_count": int,
    "resumed_from_epoch": int, "best_epoch": int, "test_accuracy": _NUMBER,
    "test_loss": _NUMBER, "train_time_s": _NUMBER, "wall_time_s": _NUMBER,
    "wall_time_this_invocation_s": _NUMBER,
    "learning_rate": _NUMBER, "best_value": _NUMBER, "deterministic": bool,
    "resumed": bool, "stopped_early": bool, "class_names": list, "overrides": list,
    "finish_errors": list,
    "per_class_accuracy": dict, "versions": dict, "test_metrics": dict, "plugin_metrics": dict,
    "precise_bn": dict,
}


def check_summary(path: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """``summary`` (summary.json's content), or one line naming the first field of the
    wrong type: what a resume, ``runs``, ``evaluate`` and ``export`` rely on is checked
    once, here."""
    for key, kind in SUMMARY_FIELDS.items():
        value = summary.get(key)
        if value is None:
            continue
        wrong = (not isinstance(value, kind)
                 or (kind in (int, _NUMBER) and isinstance(value, bool))
                 or (key in ("class_names", "overrides")
                     and not all(isinstance(v, str) for v in value)))
        if wrong:
            listed = key in ("class_names", "overrides")
            got = type(value).__name__
            if listed and isinstance(value, list):
                got = "a list holding " + next(type(v).__name__ for v in value
                                               if not isinstance(v, str))
            raise UnreadableFile(f"{printable(str(path))}: {key}: expected "
                                 f"{'a list of strings' if listed else _type_name(kind)}, "
                                 f"got {got}")
    return summary


def _type_name(kind) -> str:
    if kind is _NUMBER:
        return "a number"
    return {str: "text", int: "an integer", bool: "true or false", list: "a list",
            dict: "a table"}[kind]


#: What cifarkit itself writes in a run directory (temporary files start with "."):
#: no plugin may write there.
OWNED = ("recipe.toml", "summary.json", "metrics.csv", "timing.csv", "model.keras", "run.log",
         "accuracy.png", "loss.png", "learning_rate.png", "confusion_matrix.png",
         "confusion_matrix_normalized.png", "checkpoint", "evaluation")


def run_file(run_dir: Path, name: str, what: str) -> Path:
    """``run_dir / name`` for a plugin to write, refusing (one line naming ``what``) a name
    that escapes the run directory or is one cifarkit owns (:data:`OWNED`, or hidden),
    and a path that already leads out of it: a folder on the way that is a symbolic
    link, or a file there that is a link, not a regular file, or has a second hard link
    (a callback writing it, a CSV log appending on resume, would change a file elsewhere).
    Checked when the plugin asks, before training starts."""
    from pathlib import PurePath

    rel = PurePath(name) if isinstance(name, str) else None
    if not name or rel is None or rel.is_absolute() or ".." in rel.parts:
        raise PluginError(f"{what}: {name!r} must be a relative path inside the run directory")
    first = rel.parts[0]
    if first in OWNED or first.startswith("."):
        raise PluginError(f"{what}: {name!r} is cifarkit's own file in the run directory "
                          f"(cifarkit writes {', '.join(OWNED)} and hidden files); "
                          "choose another name")
    path = Path(run_dir)
    for i, part in enumerate(rel.parts):
        path = path / part
        last = i == len(rel.parts) - 1
        why = link_problem(path, folder=True)  # a folder on the way, or a folder or file last
        if why is None and not last and os.path.lexists(path) and not is_folder(path):
            why = "not a folder"
        if why is not None:
            raise OutputError(f"{path}: {what} would write through it: {why}; cifarkit writes "
                              "no file of a run folder through a link: remove it and try again")
    return Path(run_dir) / rel


def link_problem(path: Path, folder: bool = False) -> str | None:
    """Why writing at ``path`` would reach beyond it, or None (also when nothing is
    there): a symbolic link, not a regular file (a folder where ``folder``), or a file
    with a second hard link. The one check behind every refusal to write in place."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be checked ({exc.strerror or exc})"
    if stat.S_ISLNK(info.st_mode):
        return "a symbolic link"
    if folder and stat.S_ISDIR(info.st_mode):
        return None
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_nlink > 1:
        return f"a file with {info.st_nlink} hard links (it is also elsewhere)"
    return None


#: The folders of a run that cifarkit writes files into.
OWN_FOLDERS = ("checkpoint", ".checkpoint-previous", ".checkpoint-pending", "evaluation")


def check_own_files(run_dir: Path, names: tuple[str, ...] | None = None) -> None:
    """Refuse (one line, before anything is written) a run folder where a file cifarkit
    writes (:data:`OWNED`, ``.signature``, the checkpoint's files, evaluation/'s) is a
    symbolic link, not a regular file, or has a second hard link, or where one of its
    folders is a link: a write there would change a file elsewhere, or hang."""
    def refuse(path: Path, why: str) -> OutputError:
        return OutputError(f"{printable(str(path))}: {why}; cifarkit writes no file of a run "
                           "folder through a link or in place: remove it, or copy the run "
                           "folder without links (cp -r)")

    for name in names or (*OWNED, ".signature", *OWN_FOLDERS):
        path = Path(run_dir) / name
        why = link_problem(path, folder=True)
        if why is not None:
            raise refuse(path, why)
        if name in OWN_FOLDERS and is_folder(path):  # its files (a folder in it is not one)
            check_own_files(path, tuple(e.name for e in os.scandir(path)
                                        if not e.is_dir(follow_symlinks=False)))
