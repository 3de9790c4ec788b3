"""Concurrency slots: at most N handlers at once for one ``concurrency_key``, across every
worker, thread and process on the machine.

A key's slots are lock files beside the queue, ``queue.slot-<digest>-<n>.lock`` for n below
the key's limit (the digest of the key keeps any key safe in a file name; the file holds the
key, for ``cat``). A worker takes a slot with a non-blocking flock when it claims a job of the
key, and lets it go when the handler returns (or the job is put back). A worker that dies
holds nothing: the kernel drops its flocks with the process, so a SIGKILL leaks no slot,
the rule that makes a dead worker's lease end at once (see liveness.py). A job whose key has
no free slot is not claimed: it stays pending, its attempts untouched, and is due again as
soon as a slot frees.
"""

import contextlib
import fcntl
import os
import stat
from pathlib import Path
from typing import Optional

from .files import flock, key_digest, open_own, unlock

STALE_SLOT_SECONDS = 3600  # an unlocked slot file this old is deleted


class Slot:
    """A slot held: its flocked descriptor, until ``release``."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd: Optional[int] = fd

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            unlock(fd)


class Slots:
    """The slot files of one queue file."""

    def __init__(self, queue_path: Path) -> None:
        self.directory = queue_path.parent
        self.prefix = f"{queue_path.stem}.slot-"

    def path(self, key: str, number: int) -> Path:
        digest = key_digest(key)
        return self.directory / f"{self.prefix}{digest}-{number}.lock"

    def take(self, key: str, limit: int) -> Optional[Slot]:
        """A free slot of ``key`` among its first ``limit``, or None if all are held."""
        for number in range(limit):
            path = str(self.path(key, number))
            while True:
                try:
                    fd = open_own(path, os.O_RDWR | os.O_CREAT)
                except FileNotFoundError:  # the directory is gone
                    return None
                try:
                    flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    break  # held: try the next slot
                except BaseException:
                    os.close(fd)
                    raise
                status = os.fstat(fd)
                if status.st_nlink == 0:  # deleted by a clean-up meanwhile: open it anew
                    unlock(fd)
                    continue
                if not stat.S_ISREG(status.st_mode):
                    unlock(fd)
                    break
                if status.st_size == 0:
                    with contextlib.suppress(OSError):
                        os.write(fd, key.encode("utf-8", "backslashreplace") + b"\n")
                os.utime(fd)  # in use: not stale
                return Slot(fd)
        return None

    def remove_stale(self, now: float) -> None:
        """Delete slot files nobody holds and nobody took for an hour."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        for name in names:
            if not (name.startswith(self.prefix) and name.endswith(".lock")):
                continue
            path = self.directory / name
            with contextlib.suppress(OSError):
                if os.lstat(path).st_mtime > now - STALE_SLOT_SECONDS:
                    continue
                fd = open_own(str(path), os.O_RDONLY)
                try:
                    flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                try:
                    if stat.S_ISREG(os.fstat(fd).st_mode):
                        os.unlink(path)  # a taker waiting on it sees it deleted and opens anew
                finally:
                    unlock(fd)
