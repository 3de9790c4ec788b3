"""Which workers are alive, and which jobs a dead one had started: one file per worker run.

A worker run creates ``<queue>.worker-<token>.lock`` beside the queue file and holds an
exclusive flock on it until it ends; the kernel releases the lock the moment the process dies,
however it dies. The token is written into the options of every job the run claims, so another
worker that finds such a job asks whether its owner still holds the lock. While it does, the
job is not taken, whatever the owner's threads are doing (a handler that holds the GIL can
starve the thread that renews leases). Once the file is there and unlocked, its run has
surely ended: its jobs are taken again at once, without waiting for their lease.

The file is also the run's record of the jobs it started: it appends a job's id (one write,
no fsync: the kernel keeps it whatever becomes of the process) just before calling its
handler. A job the dead run had started counts the attempt (so a job that kills its worker
every time ends ``failed``); one it had claimed but never started goes back to the attempts
it had before that claim. The run empties the record whenever every job it started has its
final state on disk, so it stays small.

What this assumes: the workers share the kernel's view of the lock and of the file, which
is true of processes on one machine and of containers on one host sharing the directory.
So the file's first line names the kernel's boot id, and a run writes it only once it has
seen its lock exclude another open of the file. Where a worker cannot know (the file is gone,
a planted link or FIFO, another machine's or an unproven lock, a record cut short), it does
as it always did: a job is taken once its lease has run out, the attempt counting. A lock
still held (NFSv4 with locking, say) always keeps the job.
"""

import contextlib
import errno
import fcntl
import functools
import logging
import os
import re
import stat
from pathlib import Path
from typing import Dict, FrozenSet, NamedTuple, Optional, Set

from ..errors import QueueError
from .files import check_regular, flock, flocked, open_own, unflock, unlock

logger = logging.getLogger("dbbasic_queue")

_TOKEN = re.compile(r"[0-9a-f]{16}\Z")
# Never through a symbolic link, and O_NONBLOCK: a FIFO planted under a worker file's name
# (the web user can write the directory) must not make a worker wait in open() forever.
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_RECORD_BYTES = 8 << 20  # about 490,000 job ids; a longer record is not read
DEAD_FILE_SECONDS = 3600  # a dead run's file is removed after this, once no job names it
FORGOTTEN_FILE_SECONDS = 7 * 86400  # and after this whatever the queue file holds


def new_token() -> str:
    return os.urandom(8).hex()  # as secrets.token_hex(8)


def is_token(value) -> bool:
    return isinstance(value, str) and _TOKEN.match(value) is not None


@functools.lru_cache(maxsize=None)
def _trusted_header() -> bytes:
    """The first line of a record written on this kernel since it booted."""
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as file:
            kernel = b"boot " + file.read().strip()
    except OSError:  # not Linux: the host's name stands for the kernel
        import socket
        kernel = b"host " + socket.gethostname().encode("utf-8", "replace")
    return b"dbbasic-queue worker run, " + kernel + b"\n"


_UNPROVEN_HEADER = b"dbbasic-queue worker run, its lock not seen to exclude\n"  # never trusted


class Owner(NamedTuple):
    """What a worker can know of the run named in a processing job's options."""

    alive: Optional[bool]  # True: it holds its lock; False: it has surely ended; None: unknown
    started: Optional[FrozenSet[str]] = None  # once ended: the jobs it started, if readable


ALIVE, UNKNOWN = Owner(True), Owner(None)


class RunLock:
    """The liveness lock a worker run holds, and its record of the jobs it started."""

    def __init__(self, path: Path, fd: int, header: bytes) -> None:
        self.path, self.fd = path, fd
        self.header_size = len(header)
        self.recording = header == _trusted_header()
        self.dirty = False  # a job recorded since the record was last emptied

    def started(self, job_id: str) -> None:
        """Record that the handler of ``job_id`` is about to be called."""
        if not self.recording:
            return
        line = job_id.encode("utf-8") + b"\n"
        self.dirty = True
        try:
            if os.write(self.fd, line) == len(line):  # O_APPEND: one line, whole, per write
                return
        except OSError:
            pass
        self._give_up("could not record a job it started (a full disk?)")

    def forget_started(self) -> None:
        """Empty the record: call only when every job this run started has its final state
        on disk, or has been taken by another worker."""
        if self.recording and self.dirty:
            try:
                os.ftruncate(self.fd, self.header_size)
                self.dirty = False
            except OSError:
                self._give_up("could not empty its record of started jobs")

    def _give_up(self, why: str) -> None:
        # A record that may miss a started job must not be read as whole: without its first
        # line nobody trusts it, and this run's jobs wait for their lease if it dies.
        self.recording = False
        try:
            os.ftruncate(self.fd, 0)
        except OSError:
            logger.error("%s: %s, nor empty it: if this worker dies, a job it started may be "
                         "run again without counting an attempt", self.path, why)
            return
        logger.warning("%s: %s; if this worker dies, its jobs wait for their lease", self.path,
                       why)

    def release(self) -> None:
        # Unlinked before the lock is let go, so nobody can see the file unlocked while this
        # run still has jobs on disk under its token: the run has written them all by now.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        unlock(self.fd)


class WorkerLocks:
    """The liveness files of one queue file's workers."""

    def __init__(self, queue_path: Path) -> None:
        self.queue_path = queue_path
        self.directory = queue_path.parent
        self.prefix = f"{queue_path.stem}.worker-"

    def path(self, token: str) -> Path:
        if not is_token(token):
            raise ValueError(f"{token!r} is not a worker token")
        return self.directory / f"{self.prefix}{token}.lock"

    def hold(self, token: str) -> RunLock:
        """Create and lock this run's file, then write its first line: the trusted one once
        a second open of the file could not lock it (a file system whose locks exclude)."""
        path = self.path(token)
        fd = flocked(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND |
                             os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))
        try:
            header = _trusted_header() if self._excludes(path) else _UNPROVEN_HEADER
            try:
                os.write(fd, header)
            except OSError:  # a full disk: no record, and nobody trusts an empty file
                header = b""
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            unlock(fd)
            raise
        return RunLock(path, fd, header)

    @staticmethod
    def _excludes(path: Path) -> bool:
        fd = os.open(path, _READ)
        try:
            flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            unlock(fd)
        return False

    def owner(self, token) -> Owner:
        """What can be known of the run with ``token``: ALIVE while it holds its lock; once
        it has ended (its file there, unlocked, and trusted), an Owner with ``alive`` False
        and the jobs it started (None if its record cannot be read); UNKNOWN otherwise."""
        if not is_token(token):
            return UNKNOWN
        try:
            fd = os.open(self.path(token), _READ)
        except FileNotFoundError:
            return UNKNOWN  # it ended and wrote its jobs, or its file was deleted
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENXIO):
                return UNKNOWN  # a planted symlink (or socket) proves nothing
            raise
        try:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                return UNKNOWN  # nor does a planted FIFO or directory
            try:
                flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return ALIVE
            try:
                return _ended(fd, status.st_size)
            finally:
                unflock(fd)
        finally:
            os.close(fd)

    def remove_dead(self, now: float) -> None:
        """Delete the files of runs that died (SIGKILL, a crash) without removing their own,
        once an hour old and no line of the queue file names their run (a week old, in any
        case): a file is a dead run's record, read when its jobs are taken again."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        dead: Dict[str, tuple] = {}  # token: (its descriptor, locked here; its mtime)
        try:
            for name in names:
                token = name[len(self.prefix):-len(".lock")]
                if not (name.startswith(self.prefix) and name.endswith(".lock") and
                        is_token(token)):
                    continue
                with contextlib.suppress(OSError):
                    if os.lstat(self.directory / name).st_mtime > now - DEAD_FILE_SECONDS:
                        continue
                    fd = os.open(self.directory / name, _READ)
                    status = os.fstat(fd)
                    try:
                        if stat.S_ISREG(status.st_mode):
                            flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours now: its run is dead
                            dead[token], fd = (fd, status.st_mtime), None
                    finally:
                        if fd is not None:
                            os.close(fd)
            if not dead:
                return
            named = self._named({token for token, (_, mtime) in dead.items()
                                 if mtime > now - FORGOTTEN_FILE_SECONDS})
            for token in set(dead) - named:
                with contextlib.suppress(OSError):
                    os.unlink(self.path(token))
        finally:
            for fd, _ in dead.values():
                unlock(fd)

    def _named(self, tokens: Set[str]) -> Set[str]:
        """Which of ``tokens`` appear in the queue file (all of them if it cannot be read).
        A dead run's token is never written again, so one version of the file tells."""
        wanted = {token.encode(): token for token in tokens}
        if not wanted:
            return set()
        try:
            fd = open_own(str(self.queue_path), os.O_RDONLY)
            check_regular(fd, str(self.queue_path))
        except FileNotFoundError:
            return set()
        except (OSError, QueueError):
            return set(tokens)
        found: Set[str] = set()
        with open(fd, "rb") as file:
            tail = b""
            while len(found) < len(wanted):
                block = file.read(1 << 20)
                if not block:
                    break
                window, tail = tail + block, block[-15:]
                found.update(token for raw, token in wanted.items() if raw in window)
        return found


def _ended(fd: int, size: int) -> Owner:
    """The Owner of an unlocked file: ended, with its record if it is trusted and whole."""
    data = os.pread(fd, len(_trusted_header()) if size > MAX_RECORD_BYTES else size, 0)
    header, newline, record = data.partition(b"\n")
    if header + newline != _trusted_header():
        return UNKNOWN  # being created, unproven, another kernel's, or not ours at all
    if size > MAX_RECORD_BYTES:
        return Owner(False)
    # The last part has no newline: empty, or a write cut short, which recorded nothing.
    return Owner(False, frozenset(record.decode("utf-8", "replace").split("\n")[:-1]))
