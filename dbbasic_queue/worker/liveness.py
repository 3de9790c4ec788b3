"""Which workers are alive: each worker run holds an flock on a file of its own.

A worker run creates ``<queue>.worker-<token>.lock`` beside the queue file and holds an
exclusive flock on it until it ends; the kernel releases the lock the moment the process dies,
however it dies. The token is written into the options of every job the run claims, so another
worker that finds such a job's lease run out first asks whether its owner still holds the lock.
While it does, the job is not taken, whatever the owner's threads are doing (a handler that
holds the GIL can starve the thread that renews leases).

What this assumes: the workers share the kernel's view of the lock, which is true of processes
on one machine, containers on one host sharing the directory, and NFSv4 mounts with locking.
Where a worker cannot know (the lock file is gone, or a file system whose locks do not cross
machines reports it free), the time lease decides, as it always did.
"""

import errno
import fcntl
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Optional

from ..storage.files import flocked

_TOKEN = re.compile(r"[0-9a-f]{16}\Z")
# Never through a symbolic link, and O_NONBLOCK: a FIFO planted under a worker file's name
# (the web user can write the directory) must not make a worker wait in open() forever.
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def new_token() -> str:
    return secrets.token_hex(8)


def is_token(value) -> bool:
    return isinstance(value, str) and _TOKEN.match(value) is not None


class WorkerLocks:
    """The liveness lock files of one queue file's workers."""

    def __init__(self, queue_path: Path) -> None:
        self.directory = queue_path.parent
        self.prefix = f"{queue_path.stem}.worker-"

    def path(self, token: str) -> Path:
        if not is_token(token):
            raise ValueError(f"{token!r} is not a worker token")
        return self.directory / f"{self.prefix}{token}.lock"

    def hold(self, token: str) -> int:
        """Create and lock this run's file; returns the descriptor to pass to ``release``."""
        return flocked(os.open(self.path(token), os.O_RDWR | os.O_CREAT | os.O_EXCL |
                               os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))

    def release(self, token: str, fd: int) -> None:
        # Unlinked before the lock is let go, so nobody can see the file unlocked while this
        # run still has jobs on disk under its token: the run has written them all by now.
        try:
            os.unlink(self.path(token))
        except FileNotFoundError:
            pass
        os.close(fd)

    def alive(self, token) -> Optional[bool]:
        """True while the run with ``token`` holds its lock; False once it has ended (its file
        is unlocked, or gone); None when ``token`` is not a worker token."""
        if not is_token(token):
            return None
        try:
            fd = os.open(self.path(token), _READ)
        except FileNotFoundError:
            return False
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENXIO):
                return None  # a planted symlink (or socket) proves nothing
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None  # nor does a planted FIFO or directory
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def remove_dead(self, now: float) -> None:
        """Delete the files of runs that died (SIGKILL, a crash) without removing their own.
        Files younger than a minute are left: their run may be between creating and locking."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        for name in names:
            if not (name.startswith(self.prefix) and name.endswith(".lock")):
                continue
            token = name[len(self.prefix):-len(".lock")]
            if not is_token(token):
                continue
            try:
                fd = os.open(self.directory / name, _READ)
            except OSError:
                continue
            try:
                status = os.fstat(fd)
                if status.st_mtime > now - 60 or not stat.S_ISREG(status.st_mode):
                    continue
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.unlink(self.directory / name)  # ours now: its run is dead
            except OSError:
                pass
            finally:
                os.close(fd)
