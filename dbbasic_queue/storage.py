"""The queue file as storage: a dbbasic-tsv table, its lock, appends and atomic rewrites.

The file is exactly what dbbasic-tsv writes and reads (``TSV("queue", COLUMNS)``): a header,
tab-separated fields, CSV quoting for fields that hold a double quote (``"{""to"": 1}"``), and
the lock file ``<table>.lock`` beside it. On top of dbbasic-tsv's API this layer adds what a
queue needs and dbbasic-tsv 1.0.2 lacks: a locked append that cannot splice two jobs into one
line, atomic rewrites (temporary file, fsync, rename, all under the lock) that keep the file's
mode and owner, and a line-by-line reader, so one broken line can only hide itself.
"""

import contextlib
import errno
import fcntl
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Tuple

from .errors import QueueError
from .job import COLUMNS, HEADER, KNOWN_HEADERS

logger = logging.getLogger("dbbasic_queue")

TEMP_PREFIX = ".dbbasic-queue-"  # never dbbasic-tsv's own "<table>.tmp", which it renames blindly


class Editor:
    """Decides each job line of a rewrite: returns the line to write in its place, or None
    to drop it. It sets ``changed`` once it has changed anything (a rewrite that changes
    nothing is skipped), and ``done`` once it will change nothing more (the rest of the file
    is then copied as it is, without a look at each line)."""

    changed = False
    done = False
    position = 0  # set before each call: where the returned line starts in the new file
    resume_offset: Optional[int] = None  # set by the editor: see Bookmark
    bookmark: Optional["Bookmark"] = None  # set by a rewrite that took place

    def __call__(self, line: bytes) -> Optional[bytes]:
        return line

    def commit(self) -> None:
        """Called with the lock held, the new file written and fsynced, just before it is
        renamed over the table: what must be durable before the new file is (archived lines)."""

    def abandon(self) -> None:
        """Called when this editor's rewrite will not be renamed into place."""


def same_file(fd: int, current: os.stat_result) -> bool:
    """Whether ``current`` describes the file open at ``fd``. Comparing inode numbers is
    enough only because ``fd`` holds that file open: a rewrite frees the old file's inode,
    and the next rewrite often gets the same number."""
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (current.st_dev, current.st_ino)


@dataclass(frozen=True)
class Bookmark:
    """Where a worker's next rewrite may start editing: ``offset`` in a file it wrote itself.

    Until then that file only grows by appends, so the lines before ``offset`` (which its
    worker has already looked at) can be copied as they are. ``fd`` keeps the file open, so
    its inode cannot be reused; the owner closes it.
    """

    fd: int
    offset: int

    def still_current(self, current: os.stat_result) -> bool:
        return same_file(self.fd, current) and self.offset <= current.st_size

    def close(self) -> None:
        os.close(self.fd)


class Table:
    """One queue file and its lock. Cheap to create; holds no open files between calls."""

    def __init__(self, path, lock_path=None) -> None:
        self.path = Path(path).absolute()
        if self.path.suffix != ".tsv" or not self.path.stem:
            raise ValueError(f"queue file {str(path)!r} must be a .tsv file, as dbbasic-tsv "
                             f"names its tables, for example 'data/queue.tsv'")
        # An archive file shares its queue's lock: every file of one queue has one writer at a time.
        self.lock_path = self.path.with_suffix(".lock") if lock_path is None else Path(lock_path)
        self._file, self._lock_file = str(self.path), str(self.lock_path)  # os.open takes str fastest
        self._header_checked = False  # once per Table: only this module rewrites headers

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold dbbasic-tsv's exclusive table lock (flock on ``<table>.lock``).

        Every writer takes it: appends, rewrites, and dbbasic-tsv's own insert and update.
        """
        fd = self._acquire_lock()
        try:
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _acquire_lock(self) -> int:
        # A fresh descriptor each time, so threads and forked processes exclude each other
        # too, and a lock file deleted by hand is not held on to.
        try:
            fd = os.open(self._lock_file, os.O_RDONLY | os.O_CREAT, 0o666)
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._lock_file, os.O_RDONLY | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _create(self) -> None:
        # Called with the lock held: dbbasic-tsv's own table creation is not locked, so two
        # processes creating the table at once could each write a header over the other's jobs.
        # Imported here: a worker on an existing file saves its import (about 6 MB).
        from dbbasic.tsv import TSV
        TSV(self.path.stem, list(COLUMNS), data_dir=self.path.parent)

    def _check_header(self, header: bytes) -> None:
        if header and header.rstrip(b"\r\n") not in KNOWN_HEADERS:
            raise QueueError(f"{self.path} is not a dbbasic-queue file: its first line should be "
                             f"the header {' '.join(COLUMNS)!r} (tab-separated); point the queue "
                             f"at another file or move this one away")

    def append(self, line: bytes, durable: bool = False,
               unless: Optional[Callable[[int], Optional[str]]] = None) -> Optional[str]:
        """Add one job line at the end of the file, under the lock; fsync it if ``durable``.

        ``unless(fd)``, called with the lock held and the file open, may return a value
        instead: then nothing is written and append returns it (a unique job's twin).
        The hot path of enqueue: a plain sequence of system calls, no context managers.
        """
        lock = self._acquire_lock()
        try:
            try:
                fd = os.open(self._file, os.O_RDWR | os.O_APPEND)
            except FileNotFoundError:
                self._create()
                fd = os.open(self._file, os.O_RDWR | os.O_APPEND)
            try:
                if not self._header_checked:
                    self._check_header(os.pread(fd, 200, 0).split(b"\n", 1)[0])
                    self._header_checked = True
                if unless is not None:
                    found = unless(fd)
                    if found is not None:
                        return found
                size = os.lseek(fd, 0, os.SEEK_END)
                if size == 0:  # a crash inside dbbasic-tsv's table creation left it empty
                    os.write(fd, HEADER)
                elif os.pread(fd, 1, size - 1) != b"\n":
                    # A writer killed in the middle of a write left half a line: end it there,
                    # so it stays one corrupt line and does not swallow this job.
                    line = b"\n" + line
                _write_all(fd, line)
                if durable:
                    os.fsync(fd)
                return None
            finally:
                os.close(fd)
        finally:
            os.close(lock)  # releases the flock

    def signature(self) -> Optional[tuple]:
        """(inode, size, mtime) of the file, or None: changes whenever a job is added or
        the file is rewritten. A cheap stat, for an idle worker to watch."""
        try:
            stat = os.stat(self._file)
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_size, stat.st_mtime_ns

    def lines(self) -> Iterator[Tuple[int, bytes]]:
        """Yield (line number, line) for every job line, without the lock.

        A rename replaces the file whole, so an open file is always one consistent version;
        a last line still being appended (no newline yet) is not yielded.
        """
        try:
            file = open(self.path, "rb")
        except FileNotFoundError:
            return
        with file:
            self._check_header(file.readline())
            for number, line in enumerate(file, start=2):
                if line.endswith(b"\n"):
                    yield number, line

    def rewrite(self, start_edit: Callable[[], Editor],
                resume: Optional[Bookmark] = None) -> Optional[Editor]:
        """Rewrite the file atomically, passing every job line through a fresh editor.

        Returns the editor that produced the file now on disk (None if there is no file), so
        the caller reads what it decided from it. The long part (reading and writing every
        line) runs without the lock, so enqueues are not held up; then, under the lock, lines
        appended meanwhile go through the same editor, the copy is fsynced and renamed over
        the table. If another rewrite replaced the file meanwhile, it starts again; the third
        try holds the lock throughout, so it cannot starve. With a ``resume`` bookmark still
        valid, lines before it are copied without the editor seeing them; the new file's
        bookmark is in ``edit.bookmark`` if the editor set ``resume_offset``.
        """
        for attempt in range(3):
            hold_throughout = attempt == 2
            with self.lock() if hold_throughout else contextlib.nullcontext():
                done, edit = self._try_rewrite(start_edit, hold_throughout, resume)
            if done:
                return edit
        raise AssertionError("unreachable: the third rewrite holds the lock")

    def _try_rewrite(self, start_edit, locked: bool, resume: Optional[Bookmark]):
        try:
            source = open(self.path, "rb")
        except FileNotFoundError:
            return True, None
        with source:
            before = os.fstat(source.fileno())
            edit = start_edit()
            fd, temp_path = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=self.path.parent)
            try:
                with open(fd, "wb") as out:
                    header = source.readline()
                    self._check_header(header)
                    # A file written before the options column gets its header now; its
                    # old lines, with one field less, read as jobs without options.
                    out.write(header if header.rstrip(b"\r\n") == HEADER.rstrip(b"\n") else HEADER)
                    consumed = len(header)
                    if resume is not None and resume.still_current(before):
                        consumed += _copy_verbatim(source, out, b"", resume.offset - consumed)
                        source.seek(consumed)  # the copy reads ahead in blocks
                    consumed += _edit_lines(source, out, edit, before.st_size - consumed)
                    if not edit.changed:
                        return True, edit  # nothing to change (lines appended meanwhile wait)
                    if not locked:
                        out.flush()
                        os.fsync(out.fileno())  # the bulk of the data, before taking the lock
                    with contextlib.nullcontext() if locked else self.lock():
                        if not locked and os.stat(self.path).st_ino != before.st_ino:
                            return False, None  # another rewrite won; start again from its file
                        source.seek(consumed)
                        _edit_lines(source, out, edit, None)  # jobs appended meanwhile
                        out.flush()
                        keep_mode_and_owner(out.fileno(), before, self.path)
                        os.fsync(out.fileno())
                        edit.commit()
                        os.replace(temp_path, self.path)
                        temp_path = None
                        fsync_directory(self.path.parent)
                        if edit.resume_offset is not None:
                            edit.bookmark = Bookmark(os.dup(out.fileno()), edit.resume_offset)
                        return True, edit
            finally:
                if temp_path is not None:
                    edit.abandon()
                    os.unlink(temp_path)

    def remove_stale_temporary_files(self, older_than: float, now: float) -> None:
        """Delete temporary files left by rewrites that were killed before their rename."""
        with contextlib.suppress(FileNotFoundError), os.scandir(self.path.parent) as entries:
            for entry in entries:
                if entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        if entry.stat().st_mtime < now - older_than:
                            os.unlink(entry.path)


def _edit_lines(source, out, edit: Editor, limit: Optional[int]) -> int:
    """Copy complete lines from ``source`` through ``edit``, reading at most ``limit`` bytes
    (all if None, with the lock held: then a final line without a newline, left by a writer
    killed mid-append, is kept as it is and ended). Returns the bytes consumed."""
    consumed, written = 0, out.tell()
    for line in source:
        if edit.done:
            return consumed + _copy_verbatim(source, out, line, None if limit is None else limit - consumed)
        if not line.endswith(b"\n"):
            if limit is not None:
                break  # still being appended: the locked pass copies it
            out.write(line + b"\n")
        elif limit is not None and consumed + len(line) > limit:
            break
        else:
            edit.position = written
            new = edit(line)
            if new is not None:
                written += out.write(new)
        consumed += len(line)
    return consumed


def _copy_verbatim(source, out, data: bytes, budget: Optional[int]) -> int:
    """Copy ``data`` and what follows it in ``source`` unchanged, in large blocks. With a
    ``budget`` (the pass without the lock), at most that many bytes and only whole lines;
    without, to the end, ending a last line that has no newline. Returns the bytes consumed
    (``source`` may have been read beyond them)."""
    consumed = 0
    while True:
        if budget is not None:
            data = data[:budget - consumed]
        whole = data.rfind(b"\n") + 1
        out.write(data[:whole])
        consumed += whole
        data = data[whole:]  # the start of a line that continues in the next block
        more = source.read(1 << 20) if budget is None or consumed + len(data) < budget else b""
        if not more:
            break
        data += more
    if data and budget is None:
        out.write(data + b"\n")
        consumed += len(data)
    return consumed


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written < len(data):  # only for huge lines, or a signal in the middle
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view):]


def keep_mode_and_owner(fd: int, original: os.stat_result, path: Path) -> None:
    """Give the file open at ``fd`` the mode and owner of ``original`` (the file at ``path``
    it replaces or joins), so the web app's user can still use it after root wrote it."""
    # A rewrite by the cron user must leave the file appendable by the web app's user.
    try:
        os.fchown(fd, original.st_uid, original.st_gid)
    except PermissionError:
        mine = os.fstat(fd)
        if (mine.st_uid, mine.st_gid) != (original.st_uid, original.st_gid):
            logger.warning("%s now belongs to uid %d gid %d (it was %d:%d): a process of this user "
                           "may not append to it any more; see 'Sharing one queue between users' "
                           "in the README", path, mine.st_uid, mine.st_gid,
                           original.st_uid, original.st_gid)
    os.fchmod(fd, original.st_mode & 0o7777)  # after fchown, which may clear setgid


def fsync_directory(directory: Path) -> None:
    # The rename survives a power loss only once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.EBADF):  # some file systems refuse it
            raise
    finally:
        os.close(fd)
