"""The run directory: naming, atomic writes, summary.json, metrics.csv and
timing.csv, plots, the model file. Every read and write of a run directory's
files goes through here (checkpoints: :mod:`cifarkit.runs.checkpoint`)."""

from __future__ import annotations

import contextlib
import csv
import errno
import gc
import io
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from cifarkit.errors import CifarkitError, OutputError
from cifarkit.runs import folder, manifest
from cifarkit.runs.lock import is_locked
from cifarkit.core.params import plain




def check_output(output: Path) -> None:
    """Fail early (before any training) if ``output`` cannot hold a run directory."""
    probe = output
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise OutputError(f"{output}: output path is not a directory ({probe} is a file)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{output}: output directory is not writable ({probe})")


def run_dir_name(name: str, when: float | None = None) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(when))}"


def create_run_dir(output: Path, name: str, exact: str | None = None) -> Path:
    """Create a new, unique run directory (never reuses an existing one); ``exact``: that
    name in ``output`` (an empty folder there is taken: a trial a sweep named before its
    process made anything)."""
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{output}: cannot create the output directory ({exc.strerror or exc})") from None
    if exact is not None:
        path = output / exact
        try:
            path.mkdir()
        except FileExistsError:
            if not folder.is_folder(path) or any(os.scandir(path)):
                raise OutputError(f"{path}: already exists and is not an empty folder; "
                                  "choose another --run-dir, or --resume it") from None
        except OSError as exc:
            raise OutputError(f"{path}: cannot create the run directory "
                              f"({exc.strerror or exc})") from None
        return path
    base = run_dir_name(name)
    for i in range(1, 1000):
        candidate = output / (base if i == 1 else f"{base}-{i}")
        try:
            candidate.mkdir()  # atomic: two runs started at once get different directories
            return candidate
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputError(f"{candidate}: cannot create the run directory "
                              f"({exc.strerror or exc})") from None
    raise OutputError(f"{output}: too many runs named {base!r}")


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc`` (h5py and Keras wrap and chain them), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _free_bytes(path: Path) -> int | None:
    """Bytes free for this user on the file system that holds ``path`` (or its nearest parent)."""
    probe = Path(path)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        st = os.statvfs(probe)
        return st.f_bavail * st.f_frsize
    except OSError:
        return None


@contextlib.contextmanager
def writing(path: Path, needed: int | None = None, report_free: bool = True):
    """Turn a failed write of ``path`` into one line: a full disk (with the space
    needed and free), a read-only file system, a permission problem."""
    message = None
    try:
        yield
    except CifarkitError:
        raise
    except Exception as exc:
        err = _os_error(exc)
        if err is None:
            raise
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            what = f"{_size(needed)} needed" if needed else "more space needed"
            message = f"{path}: no space left on the device ({what}"
        elif err.errno == errno.EROFS:
            message = f"{path}: cannot write: read-only file system"
        elif err.errno in (errno.EACCES, errno.EPERM):
            message = f"{path}: cannot write: permission denied"
        else:
            message = f"{path}: cannot write ({err.strerror or err})"
        del err
    if message is None:
        return
    raise OutputError(_with_free(message, path) if report_free else message)


def _with_free(message: str, path: Path) -> str:
    if "no space left" not in message:
        return message
    free = _free_bytes(Path(path))
    return message + (f", {_size(free)} free" if free is not None else "") + \
        "); free some space and try again"


def guarded_write(path: Path, needed: int | None, write: Callable[[], None],
                  cleanup: Callable[[], None]) -> None:
    """Run ``write`` (which writes about ``needed`` bytes at ``path`` through a
    library such as h5py); if it fails, run ``cleanup`` and raise one line (see
    :func:`writing`). Without room for ``needed`` bytes it does not start.

    The failed write's exception holds the library's open file in its frames:
    only once that exception is gone and the file closed is the space of a
    half-written file freed (h5py's failing final flush is silenced; left to
    the interpreter's exit it crashed the process). So ``cleanup`` runs after.
    """
    free = _free_bytes(path)
    if needed and free is not None and free < needed * 1.05 + 65536:  # room for HDF5's overhead
        raise OutputError(f"{path}: no space left on the device ({_size(needed)} needed, "
                          f"{_size(free)} free); free some space and try again")
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        message = None
        try:
            with writing(path, needed, report_free=False):
                write()
        except OutputError as exc:
            message = str(exc)
        except BaseException:
            cleanup()
            raise
        if message is not None:  # the failed write's frames are gone now: close its files
            gc.collect()
            cleanup()
            raise OutputError(_with_free(message, path))
    finally:
        sys.unraisablehook = hook


def refuse_linked(path: Path) -> None:
    """Refuse (one line) to replace ``path`` when what is there is not a regular file of
    its own (:func:`cifarkit.runs.folder.link_problem`): writing it would change a file
    elsewhere, or hang."""
    why = folder.link_problem(path)
    if why:
        raise OutputError(f"{path}: {why}; cifarkit writes no file in place through a link: "
                          "remove it and try again")


def write_raw(path: Path, raw: bytes) -> None:
    """Write a file so that readers see either the old or the complete new content: a new
    file renamed into place (what stood there before is replaced, never written through)."""
    refuse_linked(path)
    with writing(path, len(raw)):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, _umask_mode())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def atomic_write(path: Path, data: bytes | str) -> None:
    """:func:`write_raw`, recorded in the run folder's signed manifest when ``path`` lies in
    a run folder this process is writing (:mod:`cifarkit.runs.manifest`)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    signed = manifest.signing(path)
    if signed is None:
        write_raw(path, raw)
        return
    refuse_linked(path)
    name = signed[0].will_write(signed[1], signed[0].digest_of(signed[1], raw))
    write_raw(path, raw)
    signed[0].settled(name)


def finite(value: Any) -> Any:
    """``value`` as plain JSON data with every non-finite float (NaN, infinity) as None."""
    value = plain(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def json_text(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON (RFC 8259): non-finite floats are written as null, never as NaN."""
    return json.dumps(finite(obj), indent=indent, sort_keys=False, allow_nan=False)


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, json_text(obj) + "\n")


def write_metrics_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """metrics.csv: one row per epoch, columns in a stable order."""
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in columns})
    atomic_write(path, buf.getvalue())


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def save_model(model: Any, path: Path) -> None:
    """Save a Keras model atomically (temporary .keras file, then rename), recorded in the
    run folder's manifest before the rename."""
    refuse_linked(path)
    with writing(path):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".model.", suffix=".keras")
        os.close(fd)

    def save() -> None:
        model.save(tmp)
        os.chmod(tmp, _umask_mode())
        signed = manifest.signing(path)
        name = signed[0].will_write(signed[1], manifest.file_digest(Path(tmp))) if signed else None
        os.replace(tmp, path)
        if signed:
            signed[0].settled(name)

    guarded_write(path, weights_bytes(model, with_optimizer=True), save,
                  lambda: Path(tmp).unlink(missing_ok=True))


def weights_bytes(model: Any, with_optimizer: bool = False) -> int:
    """About how many bytes a model's weights (and optimizer state) take on disk."""
    variables = list(model.variables)
    if with_optimizer and getattr(model, "optimizer", None) is not None:
        variables += list(model.optimizer.variables)
    total = 0
    for v in variables:
        size = 1
        for d in v.shape:
            size *= int(d or 1)
        total += size * 4
    return total


TIMING = ("epoch_time_s", "train_time_s", "images_per_s", "compiled", "compile_time_s")


def compile_times(rows: list[dict[str, Any]]) -> list[float | None]:
    """Each epoch's compilation (tracing, XLA) time: measured where the backend counts
    compilations (JAX: ``compile_time_s`` in the row), else estimated.

    The estimate: an epoch marked ``compiled`` (the first a process trains: a
    resume compiles again) pays it: its training time less that of the next
    epoch that did not (else the previous one). Other epochs: 0. ``None`` where
    no epoch without compilation exists to compare with.
    """
    plain = [r["train_time_s"] for r in rows if not r.get("compiled")]
    out: list[float | None] = []
    for i, row in enumerate(rows):
        if row.get("compile_time_s") is not None:
            out.append(row["compile_time_s"])
            continue
        if not row.get("compiled"):
            out.append(0.0)
            continue
        later = [r["train_time_s"] for r in rows[i + 1:] if not r.get("compiled")]
        reference = later[0] if later else (plain[-1] if plain else None)
        out.append(None if reference is None else max(0.0, row["train_time_s"] - reference))
    return out


def write_epoch_files(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """metrics.csv (deterministic values only) and timing.csv (seconds, the first epoch's
    compilation apart from steady training, images/s)."""
    write_metrics_csv(run_dir / "metrics.csv",
                      [{k: v for k, v in r.items() if k not in TIMING} for r in rows])
    timing = []
    for r, compile_s in zip(rows, compile_times(rows)):
        timing.append({"epoch": r["epoch"], "epoch_time_s": r.get("epoch_time_s"),
                       "train_time_s": r.get("train_time_s"), "compile_time_s": compile_s,
                       "steady_train_time_s": None if compile_s is None
                       else r["train_time_s"] - compile_s,
                       "images_per_s": r.get("images_per_s")})
    write_metrics_csv(run_dir / "timing.csv", timing)


def resume_command(run_dir: Path) -> str:
    return f"cifarkit run --resume {shlex.quote(str(run_dir))}"


def remove_debris(run_dir: Path) -> None:
    """Temporary files a killed process left (call only while holding the run's lock)."""
    for pattern in (".*.tmp", ".model.*.keras"):
        for path in run_dir.glob(pattern):
            path.unlink(missing_ok=True)
    shutil.rmtree(run_dir / ".checkpoint-pending", ignore_errors=True)


def read_summary(run_dir: Path) -> dict[str, Any]:
    """A run directory's summary.json, or a user error saying what is wrong.

    A summary that says "running" while no process holds the run directory's
    lock is reported as "crashed": its process ended without recording how
    (kill -9, a native crash, a power cut). ``--resume`` continues it.
    """
    path = Path(run_dir) / "summary.json"
    if not Path(run_dir).is_dir():
        raise OutputError(f"{run_dir}: not a run directory (not found)")
    try:
        summary = folder.check_summary(path, folder.read_json(path))
    except FileNotFoundError:
        raise OutputError(f"{run_dir}: not a run directory (no summary.json)") from None
    if summary.get("status") == "running" and not is_locked(Path(run_dir)):
        summary["status"] = "crashed"
    return summary
