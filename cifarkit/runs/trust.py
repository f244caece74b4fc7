"""Which run directories may run code: the user's own, or those the user vouches for.

A run directory is data. Its ``recipe.toml`` can name local plugin files
(Python code), an ``extends`` chain and a ``data.path``; ``evaluate``,
``predict`` and ``run --resume`` read that recipe. A directory someone else
made (downloaded, unpacked, shared) must not run its code, or read data from
paths it chose, unless the user says so (``--trust-run``, or ``--plugin
FILE`` for one file, ``--data PATH`` for the data).

cifarkit recognises the user's own run directories by a signed manifest
(:mod:`cifarkit.runs.manifest`): ``RUN_DIR/.signature`` lists every file the
run wrote with its SHA-256, signed with an HMAC under a key only this user can
read (``$XDG_CONFIG_HOME/cifarkit/run-key``, else
``~/.config/cifarkit/run-key``, mode 0600, in a folder only this user can
write). A command reads each file it needs once and checks those bytes against
the manifest: a file that differs makes the folder foreign, and the command
names it. ``recipe.toml``'s entry covers what in the recipe can read or run
something: its ``plugins``, ``extends`` and ``[data]`` table, and every text
value anywhere else (plugin names, paths, URIs), so editing a number (more
epochs before a resume) keeps the directory the user's own, while editing any
text makes it foreign until the user vouches for it again (``--trust-run``),
after which a resume signs it anew. Sweep folders are signed over their whole
``sweep.json``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from pathlib import Path

from cifarkit.errors import OutputError, printable
from cifarkit.files import read_regular

import tomllib

SIGNATURE_NAME = ".signature"
KEY_BYTES = 32


def key_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cifarkit" / "run-key"


def _check_private(path: Path, folder: bool) -> None:
    """Refuse, in one line, a key (or its folder) that another user could read, replace or
    plant: it must be this user's own, a real file (folder) and not a link, and readable or
    writable by nobody else (a key) / writable by nobody else (its folder), as ssh checks
    a private key."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"{path}: cannot check cifarkit's run key ({exc.strerror or exc})"
                          ) from None
    kind = stat.S_ISDIR if folder else stat.S_ISREG
    loose = 0o022 if folder else 0o077
    problem = ("a symbolic link" if stat.S_ISLNK(info.st_mode)
               else "not a folder" if folder and not kind(info.st_mode)
               else "not a regular file" if not kind(info.st_mode)
               else f"owned by user id {info.st_uid}, not by you" if info.st_uid != os.getuid()
               else f"mode {stat.S_IMODE(info.st_mode):04o}: others can "
                    f"{'write to it' if folder else 'read or write it'}"
               if info.st_mode & loose else None)
    if problem:
        raise OutputError(f"{path}: cifarkit's run key {'folder ' if folder else ''}is "
                          f"{problem}; a key others can reach lets them pass run folders off "
                          f"as yours (fix: chmod {'700' if folder else '600'} {path}, or "
                          "remove it to make a new key)")


def _key(create: bool) -> bytes | None:
    path = key_path()
    _check_private(path.parent, folder=True)
    _check_private(path, folder=False)
    try:
        data = read_regular(path, KEY_BYTES + 1, follow=False)
        if len(data) == KEY_BYTES:
            return data
    except OSError:
        pass
    if not create:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _check_private(path.parent, folder=True)
        data = secrets.token_bytes(KEY_BYTES)
        temporary = path.with_name(f".run-key.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            os.link(temporary, path)  # the first process to create it wins; others read it
        except FileExistsError:
            pass
        finally:
            temporary.unlink(missing_ok=True)
        _check_private(path, folder=False)
        return read_regular(path, KEY_BYTES + 1, follow=False)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create cifarkit's run key "
                          f"({exc.strerror or exc}); set XDG_CONFIG_HOME to a writable folder") from None


def _strings(doc, prefix: str = "") -> dict[str, str]:
    """Every text value of a document by its dotted key: whatever can name code, a path
    or a URL (plugin names and files, data paths, init_from, the compilation cache,
    tracker URIs, callbacks' paths) is text; numbers and booleans name nothing."""
    out: dict[str, str] = {}
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) \
        if isinstance(doc, list) else ()
    for k, v in items:
        if isinstance(v, (dict, list)):
            out.update(_strings(v, f"{prefix}{k}."))
        elif isinstance(v, str):
            out[f"{prefix}{k}"] = v
    return out


def _guarded(recipe_text: str) -> bytes:
    """What of a recipe reads or runs something, in one canonical form: its ``plugins``,
    ``extends`` and ``[data]`` whole, and every text value anywhere else."""
    doc = tomllib.loads(recipe_text)
    part = {k: doc.get(k) for k in ("plugins", "extends", "data")}
    part["text"] = _strings(doc)
    return json.dumps(part, sort_keys=True, default=str).encode("utf-8")


def _mac(key: bytes, domain: bytes, data: bytes) -> str:
    return hmac.new(key, domain + b"\0" + data, hashlib.sha256).hexdigest()


def _digest(key: bytes, recipe_text: str) -> str:
    return _mac(key, b"cifarkit-run-recipe-2", _guarded(recipe_text))


def _stored(folder: Path) -> str | None:
    """The signature a sweep folder holds (``.signature``), or None."""
    try:
        return read_regular(folder / SIGNATURE_NAME, 200, follow=False).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def sweep_signature(sweep_text: str) -> str:
    """The signature of a sweep folder's ``sweep.json`` (all of it) under this user's key."""
    return _mac(_key(create=True) or b"", b"cifarkit-sweep", sweep_text.encode("utf-8"))


def is_own_sweep(folder: Path, sweep_text: str) -> bool:
    """Whether ``sweep_text`` (the folder's sweep.json) is what this user's cifarkit wrote."""
    key, stored = _key(create=False), _stored(folder)
    if key is None or stored is None:
        return False
    return hmac.compare_digest(stored, _mac(key, b"cifarkit-sweep", sweep_text.encode("utf-8")))


def run_key(create: bool = False) -> bytes | None:
    """This user's key (created when ``create``), or None when there is none yet."""
    return _key(create=create)


def recipe_digest(key: bytes, recipe_text: str) -> str:
    """The manifest's entry for a run's ``recipe.toml``: what in it reads or runs
    something (numbers may be edited; see the module's doc). Unparseable text has a
    digest no written recipe has."""
    try:
        return _digest(key, recipe_text)
    except (ValueError, RecursionError):
        return "unparseable"


def check_resumable(snapshot, trust_run: bool) -> None:
    """Refuse (one line) to resume a run directory this user's cifarkit did not make, or
    one whose files differ from its signed manifest, unless the user vouches for it
    (``--trust-run``): a resume reads the data, runs the plugin files and writes where
    its recipe says, and signs the directory as the user's own afterwards."""
    if trust_run or snapshot.own:
        return
    doc = snapshot.recipe_doc or {}
    files = doc.get("plugins") if isinstance(doc.get("plugins"), list) else []
    data = doc.get("data") if isinstance(doc.get("data"), dict) else {}
    shown = [*(f"plugin file {f}" for f in files[:3] if isinstance(f, str)),
             *([f"data.path {data['path']}"] if isinstance(data.get("path"), str) else [])]
    named = f" ({', '.join(shown)})" if shown else ""
    raise OutputError(f"{snapshot.foreign_file}: {snapshot.why_foreign}, and resuming it "
                      f"would read, run and write what its recipe names{printable(named)}; "
                      "pass --trust-run if you trust it")
