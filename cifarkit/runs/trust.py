"""Which run directories may run code: the user's own, or those the user vouches for.

A run directory is data. Its ``recipe.toml`` can name local plugin files
(Python code), an ``extends`` chain and a ``data.path``; ``evaluate``,
``predict`` and ``run --resume`` read that recipe. A directory someone else
made (downloaded, unpacked, shared) must not run its code, or read data from
paths it chose, unless the user says so (``--trust-run``, or ``--plugin
FILE`` for one file, ``--data PATH`` for the data).

cifarkit recognises the user's own run directories by a signature: when a
run writes its ``recipe.toml``, it stores in ``RUN_DIR/.signature`` an
HMAC-SHA256, under a key only this user can read
(``$XDG_CONFIG_HOME/cifarkit/run-key``, else ``~/.config/cifarkit/run-key``,
mode 0600), of what in that recipe reads or runs something: its ``plugins``,
``extends`` and ``[data]`` table. Without the key nobody can make a recipe
that passes for the user's own. Editing other keys (more epochs before a
resume, say) keeps the directory the user's own; editing those three makes
it foreign until the user vouches for it again (``--trust-run``), after which
a resume signs it anew.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import secrets
from pathlib import Path

from cifarkit.errors import OutputError
from cifarkit.files import read_regular

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib
from cifarkit.core.recipe import MAX_RECIPE_BYTES

SIGNATURE_NAME = ".signature"
KEY_BYTES = 32


def key_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cifarkit" / "run-key"


def _key(create: bool) -> bytes | None:
    path = key_path()
    try:
        data = path.read_bytes()
        if len(data) == KEY_BYTES:
            return data
    except OSError:
        pass
    if not create:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
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
        return path.read_bytes()
    except OSError as exc:
        raise OutputError(f"{path}: cannot create cifarkit's run key "
                          f"({exc.strerror or exc}); set XDG_CONFIG_HOME to a writable folder") from None


def _guarded(recipe_text: str) -> bytes:
    """What of a recipe reads or runs something, in one canonical form."""
    doc = tomllib.loads(recipe_text)
    part = {k: doc.get(k) for k in ("plugins", "extends", "data")}
    return json.dumps(part, sort_keys=True, default=str).encode("utf-8")


def _digest(key: bytes, recipe_text: str) -> str:
    return hmac.new(key, b"cifarkit-run-recipe\0" + _guarded(recipe_text),
                    hashlib.sha256).hexdigest()


def signature(recipe_text: str) -> str:
    """The signature of a run's ``recipe.toml`` text under this user's key (created if needed)."""
    return _digest(_key(create=True) or b"", recipe_text)


def is_own(run_dir: Path) -> bool:
    """Whether ``run_dir``'s recipe.toml is one this user's cifarkit wrote (its plugins,
    extends and data unedited)."""
    key = _key(create=False)
    if key is None:
        return False
    try:
        stored = read_regular(run_dir / SIGNATURE_NAME, 200).decode("ascii").strip()
        recipe = read_regular(run_dir / "recipe.toml", MAX_RECIPE_BYTES).decode("utf-8")
        expected = _digest(key, recipe)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):  # TOML errors: ValueError
        return False
    return hmac.compare_digest(stored, expected)
