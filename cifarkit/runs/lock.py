"""One process per run directory: an advisory lock held while a process trains in it.

The lock is ``fcntl.flock`` on ``RUN_DIR/.lock``, so the operating system
releases it when the holder exits, however it exits (kill -9 and native
crashes included): a stale lock never blocks a later ``--resume``. The file
holds the holder's process id and host, for the error a second process gets,
written over the previous note in a fixed length (never truncated); a lock
file that is a link, or has a second hard link, is refused.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import socket
from pathlib import Path

from cifarkit.errors import OutputError

LOCK_NAME = ".lock"
#: The holder's note fills this many bytes of the lock file (padded with spaces).
NOTE_BYTES = 160


def holder() -> str:
    """This process, as the lock file and summary.json name it."""
    return f"process {os.getpid()} on {socket.gethostname()}"


class RunLock:
    """Exclusive use of a run directory, for as long as this object is held.

    Example::

        with RunLock(run_dir):
            ...  # train into run_dir
    """

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        path = self.run_dir / LOCK_NAME
        try:  # never through a symlink, never blocking on a FIFO; only a regular file
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                         | os.O_CLOEXEC, 0o644)
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
                os.close(fd)
                raise OSError(errno.EINVAL, "not a regular file" if info.st_nlink <= 1 else
                              f"a file with {info.st_nlink} hard links, which cifarkit does "
                              "not write through")
        except OSError as exc:
            why = ("a symbolic link, which cifarkit does not write through"
                   if exc.errno == errno.ELOOP else exc.strerror or str(exc))
            raise OutputError(f"{path}: cannot use it as the run lock ({why}); remove it "
                              "and try again") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise OutputError(f"{self.run_dir}: in use by {other}; wait for it to finish "
                              "or stop it (Ctrl-C), then resume") from None
        try:  # never truncated: the note is padded to a fixed length, over the last one
            os.pwrite(fd, holder().encode()[:NOTE_BYTES].ljust(NOTE_BYTES), 0)
        except OSError:
            pass  # the lock holds without the note (a full disk must not stop a resume)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire() if self.fd is None else self

    def __exit__(self, *exc) -> None:
        self.release()


def is_locked(run_dir: Path) -> bool:
    """Whether a live process holds ``run_dir`` (its training is really running)."""
    path = Path(run_dir) / LOCK_NAME
    try:  # a FIFO or a link planted there is no lock (and must not block the caller)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False
