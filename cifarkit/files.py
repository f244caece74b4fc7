"""Reading files a user (or someone else) pointed cifarkit at, without hanging or
exhausting memory: regular files only, and never more than a known limit."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class NotRegularFile(OSError):
    """A FIFO, device or socket where a file was expected (reading it could hang)."""


class FileTooLarge(OSError):
    """A file larger than the caller's limit; ``size`` is what was seen (at least)."""

    def __init__(self, size: int):
        super().__init__(f"{size} bytes or more")
        self.size = size


def read_regular(path: Path, limit: int) -> bytes:
    """``path``'s bytes: a regular file of at most ``limit`` bytes, else
    :class:`NotRegularFile` or :class:`FileTooLarge` (or the OSError of the open).
    The open does not block on a FIFO, and at most ``limit + 1`` bytes are read
    whatever the file claims."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
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
