"""Archive files: completed and cancelled jobs leave ``queue.tsv`` as their result is written.

They move to a file of the UTC day they finished, beside the queue: ``data/queue.2026-11-28.tsv``,
a table with the same header and lines, so ``grep ID data/queue*.tsv`` finds any job. The
live file keeps what workers must look at (pending, processing, failed), so a worker's cost
follows its work, not the history kept; retention deletes
whole archive files, at a cost that follows the files, not the jobs in them.

A worker moves lines during a rewrite it does anyway: they are spooled into temporary files,
and appended to their archive files (fsynced, under each archive file's own flock) before the
queue's lock is taken to rename the new live file into place, so enqueues never wait for the
archive's fsync. A crash in between, or a rewrite that loses its race and starts again,
leaves a job in both files, never in neither (the live line wins for every reader); the next
move skips lines its archive file already ends with. That holds because a line moves only once
the live file holds it, as it will stay: a worker's result moves in its next rewrite, not in the
one that records it (see ClaimEditor). A crash in the middle of the append
leaves a last line cut short, whose job is still in the live file: the next writer replaces
the archive file with a copy of its whole lines before it appends, so the piece never
becomes a line. An archive file thus only grows by appends of whole lines or is replaced
whole by a rename, as the live file is, and its readers stop at a line without its newline.
"""

import contextlib
import logging
import mmap
import os
import re
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from ..errors import QueueError
from .files import (check_regular, fsync_directory, flock, keep_mode_and_owner,
                    lock_current, open_own, temporary_file, unlock)
from ..model.job import HEADER, reads
from .table import Editor, Table

logger = logging.getLogger("dbbasic_queue")

ARCHIVE_AFTER_SECONDS = 0  # a finished job leaves queue.tsv in the next rewrite after its result
ARCHIVE_MIN_LINES = 1000  # moving lines is worth a rewrite of its own from this many
_DAY = 86400
_BLOCK = 1 << 20


def day_of(timestamp: int) -> str:
    """The UTC day of a timestamp, as archive files are named (YYYY-MM-DD)."""
    try:
        return time.strftime("%Y-%m-%d", time.gmtime(timestamp))
    except (OverflowError, OSError, ValueError):
        return "9999-12-31"


class Archive:
    """The archive files of one queue file. Every write or deletion of one holds its flock
    (a move's append, an admin rewrite's rename, a removal), and all but a move's append
    hold the queue's lock too."""

    def __init__(self, table: Table) -> None:
        self.queue_path = table.path
        self.directory = table.path.parent
        self.lock_path = table.lock_path
        self.table = table
        self.name = re.compile(re.escape(table.path.stem) + r"\.(\d{4}-\d{2}-\d{2})\.tsv\Z")

    def path(self, day: str) -> Path:
        return self.directory / f"{self.queue_path.stem}.{day}.tsv"

    def files(self, newest_first: bool = False) -> List[Tuple[str, Path]]:
        """(day, path) of every archive file, oldest first."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        days = sorted((m.group(1) for m in map(self.name.match, names) if m), reverse=newest_first)
        return [(day, self.path(day)) for day in days]

    def table_of(self, path: Path) -> "ArchiveTable":
        """An archive file as a Table sharing the queue's lock: for reading its lines and for
        admin rewrites."""
        return ArchiveTable(path, lock_path=self.lock_path)

    def spool(self) -> "Spool":
        return Spool(self)

    def lines(self) -> Iterator[Tuple[Path, int, bytes]]:
        """(file, line number, line) of every archived job line, oldest file first."""
        for _, path in self.files():
            for number, line in self.table_of(path).lines():
                yield path, number, line

    def find(self, prefix: bytes) -> Optional[Tuple[Path, Optional[int], bytes]]:
        """The newest archived line starting with ``prefix`` (a job id and a tab): (file,
        None, line); see ``line_number``. Searches whole files at memory speed, newest first."""
        needle = b"\n" + prefix
        for _, path in self.files(newest_first=True):
            try:
                fd = open_own(str(path), os.O_RDONLY)  # a planted link or FIFO is refused
                check_regular(fd, str(path))
                with open(fd, "rb") as file, contextlib.closing(
                        mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)) as data:
                    # Only whole lines: a last line still being appended, or cut short by a
                    # kill, is no job (its job is still in the live file).
                    whole = data.rfind(b"\n") + 1
                    at = data.rfind(needle, 0, whole)
                    if at < 0:
                        continue
                    return path, None, data[at + 1:data.find(b"\n", at + 1) + 1]
            except (FileNotFoundError, ValueError):  # gone meanwhile, or empty
                continue
        return None

    def line_number(self, path: Path, line: bytes) -> int:
        """The number of ``line`` in an archive file (for a message about a corrupt line)."""
        for number, candidate in self.table_of(path).lines():
            if candidate == line:
                return number
        return 0

    def remove_if_jobless(self, path: Path) -> bool:
        """Delete the archive file at ``path`` if it holds no job; True if it did. The check
        and the deletion hold the lock, so no move appends a job in between."""
        with self.table.lock():
            return self._unlink_locked(path, only_if_jobless=True)

    def remove_expired(self, drop_before: float) -> int:
        """Delete the archive files whose every job finished before ``drop_before``."""
        expired = [path for day, path in self.files()
                   if _day_start(day) + _DAY <= drop_before]
        if not expired:
            return 0
        with self.table.lock():
            for path in expired:
                self._unlink_locked(path)
        return len(expired)

    def _unlink_locked(self, path: Path, only_if_jobless: bool = False) -> bool:
        """Delete an archive file with its flock held, so that a move appending to it
        finishes first, and a move after it creates the file anew."""
        try:
            fd, _ = lock_current(str(path), os.O_RDONLY)
        except FileNotFoundError:
            return True
        try:
            if only_if_jobless and any(True for _ in self.table_of(path).lines()):
                return False
            os.unlink(path)
            return True
        finally:
            unlock(fd)

    def take(self, day: str, spooled, model: os.stat_result) -> None:
        """Append the lines spooled in the file ``spooled`` (open for reading, at its start) to
        the file of ``day``, creating it with the header and the live file's mode and owner
        (``model``) if new, and first replacing it by its whole lines if its last line was cut
        short. It holds the file's flock throughout (see the class), not the queue's lock."""
        target = self.path(day)
        try:
            fd, status = lock_current(str(target), os.O_RDWR | os.O_APPEND, create=True)
        except OSError as error:  # a planted link or FIFO is a QueueError saying so
            raise QueueError(f"cannot write the archive file {target} "
                             f"({getattr(error, 'strerror', None) or error})") from None
        size = status.st_size
        try:
            whole = _whole_lines_end(fd, size)
            if whole < size:
                copy, size = self._copy_of_whole_lines(fd, target, size, whole)
                fd, old = copy, fd
                unlock(old)
            if size == 0:
                keep_mode_and_owner(fd, model, target, attributes_of=str(self.queue_path))
                _write_all(fd, HEADER)
                fsync_directory(self.directory)
            spooled.readline()  # its header
            already = _lines_in_tail(fd, size, os.fstat(spooled.fileno()).st_size)
            for block in _lines_in_blocks(spooled):
                if already:
                    block = b"".join(line for line in block.splitlines(keepends=True)
                                     if line not in already)
                _write_all(fd, block)
            os.fsync(fd)
        finally:
            unlock(fd)

    def _copy_of_whole_lines(self, fd: int, target: Path, size: int, whole: int):
        """Replace the archive file open at ``fd`` by a copy of its first ``whole`` bytes, its
        whole lines (the header alone if none), and return (the copy's descriptor, flocked,
        and its size). Under the file's flock.

        The bytes after them were cut short by a writer killed mid-append (or a full disk).
        Every append holds the file's flock and comes before its live file's rename, which waits for
        the append's fsync: so that writer never renamed, and the piece's job is still in the
        live file, to be moved whole by this move or a later one. A copy renamed into place,
        not a truncation: a reader or an admin rewrite that has the file open must never see
        bytes it has read change (see ArchiveTable)."""
        piece = os.pread(fd, min(size - whole, 200), whole)
        logger.warning("%s: dropped its last %d bytes, a line cut short by a worker killed while "
                       "appending (the job is still in the queue file, and moves again): %s",
                       target, size - whole, piece.decode("utf-8", "replace"))
        copy, temp = temporary_file(self.directory)
        try:
            flock(copy)  # before it takes the name: a move waiting on the old file then waits here
            for start in range(0, whole, _BLOCK):
                _write_all(copy, os.pread(fd, min(_BLOCK, whole - start), start))
            if whole == 0:  # its header was cut short: never visible without one
                _write_all(copy, HEADER)
            keep_mode_and_owner(copy, os.fstat(fd), target, attributes_of=fd)
            os.fsync(copy)
            os.replace(temp, target)
            temp = None
            fsync_directory(self.directory)
        except BaseException:
            unlock(copy)
            if temp is not None:
                os.unlink(temp)
            raise
        return copy, whole or len(HEADER)


class ArchiveTable(Table):
    """An archive file: a Table sharing its queue's lock, whose readers and rewrites know the
    one way its writer leaves it broken, a last line cut short (see Archive.take)."""

    def lines(self) -> Iterator[Tuple[int, bytes]]:
        """(line number, line) of every whole job line, without the lock. It stops at the
        first line without its newline (the header too): a line being appended, or cut short
        by a kill; what a reader sees after it is the rest of that append, not a job."""
        file = self._open()
        if file is None:
            return
        with file:
            header = file.readline()
            if not header.endswith(b"\n"):
                return  # a new file whose creator was killed while writing the header
            self._check_header(header)
            for number, line in enumerate(file, start=2):
                if not line.endswith(b"\n"):
                    return
                yield number, line

    def rewrite(self, start_edit, resume=None):
        """Table.rewrite, dropping a last line cut short instead of ending it: its job is
        still in the live file (see Archive._copy_of_whole_lines). None, as for no file,
        while the header is cut short: such a file holds no job."""
        file = self._open()
        if file is None:
            return None
        with file:
            if not file.readline().endswith(b"\n"):
                return None

        def start() -> Editor:
            edit = start_edit()
            edit.ends_torn_line = False
            return edit
        return super().rewrite(start, resume)

    def _open(self):
        try:
            fd = open_own(str(self.path), os.O_RDONLY)
        except FileNotFoundError:
            return None
        check_regular(fd, str(self.path))  # closes it if not
        return open(fd, "rb")


class RetiringEditor(Editor):
    """An editor that, as a rewrite passes finished lines (``retire``), drops those past
    retention and moves those past the archive age into ``spool``, committed with the
    rewrite. A line past retention is a change (the last results of a queue gone quiet go
    at retention too, in one rewrite); a move is not by itself (only a rewrite done anyway
    moves), except that ARCHIVE_MIN_LINES lines to move make the rewrite worth doing."""

    drop_before: Optional[float] = None
    archive_before: Optional[float] = None
    spool: Optional["Spool"] = None
    dropped = 0
    archived = 0

    def retire(self, line: bytes, finished_at: int, known_good: bool = False) -> Optional[bytes]:
        """None if the line is dropped or moved; the line itself if it stays. A line read
        from the file is moved or dropped only if it parses (a corrupt one stays where it
        is reported); ``known_good`` spares that parse for a line this process just wrote."""
        if (self.drop_before is not None and finished_at < self.drop_before
                and (known_good or reads(line))):
            self.dropped += 1
            self.changed = True
            return None
        if (self.spool is not None and finished_at < self.archive_before
                and (known_good or reads(line))):
            self.spool.add(line, finished_at)
            self.archived += 1
            if self.archived >= ARCHIVE_MIN_LINES:
                self.changed = True
            return None
        return line

    def before_lock(self) -> None:
        if self.spool is not None:
            self.spool.commit()
            self.spool = None  # lines the locked pass sees stay, for a later move

    def abandon(self) -> None:
        if self.spool is not None:
            self.spool.abandon()


class Spool:
    """The lines one rewrite moves out of the live file, in a temporary file per day until
    the rewrite commits them (``commit``) or gives up (``abandon``)."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.files: Dict[str, Tuple[object, str]] = {}
        self.count = 0

    def add(self, line: bytes, finished_at: int) -> None:
        day = day_of(finished_at)
        entry = self.files.get(day)
        if entry is None:
            fd, temp = temporary_file(self.archive.directory)
            # Read back through this descriptor, never by name: the directory may be writable
            # by another user, who could swap the name for a link to a file of root's.
            entry = self.files[day] = (open(fd, "w+b", buffering=_BLOCK), temp)
            entry[0].write(HEADER)
        entry[0].write(line)
        self.count += 1

    def commit(self) -> None:
        """Append the spooled lines to their archive files (each under its flock)."""
        model = os.stat(self.archive.queue_path) if self.files else None
        for day, (file, _) in sorted(self.files.items()):
            file.seek(0)  # flushes what is buffered
            self.archive.take(day, file, model)
        self.abandon()

    def abandon(self) -> None:
        for file, temp in self.files.values():
            file.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        self.files.clear()


def _day_start(day: str) -> float:
    """The timestamp of UTC midnight at the start of ``day``."""
    import calendar  # only retention needs it, never a process that only enqueues
    year, month, date = (int(part) for part in day.split("-"))  # a name the file pattern matched
    return calendar.timegm((year, month, date, 0, 0, 0))


def _whole_lines_end(fd: int, size: int) -> int:
    """Where the file's whole lines end: just after its last newline (0 if it has none)."""
    end = size
    while end > 0:
        start = max(0, end - _BLOCK)
        at = os.pread(fd, end - start, start).rfind(b"\n")
        if at >= 0:
            return start + at + 1
        end = start
    return 0


def _lines_in_tail(fd: int, size: int, span: int) -> set:
    """The whole lines in the last ``span`` bytes of the file (plus a margin): where a move
    interrupted after its archive append, before its rename, left its lines. Only a line
    identical to one about to be appended proves it is there; a line cut short proves nothing."""
    start = max(0, size - span - (64 << 10))
    tail = os.pread(fd, size - start, start)
    lines = tail.splitlines(keepends=True)
    if start:
        lines = lines[1:]  # it may start mid-line
    return {line for line in lines if line.endswith(b"\n")}


def _lines_in_blocks(source) -> Iterator[bytes]:
    rest = b""
    while True:
        data = source.read(_BLOCK)
        if not data:
            if rest:
                yield rest if rest.endswith(b"\n") else rest + b"\n"
            return
        data = rest + data
        whole = data.rfind(b"\n") + 1
        rest = data[whole:]
        if whole:
            yield data[:whole]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
