"""Dated files beside the queue: one file per UTC day and kind, appended to, deleted whole.

Two kinds live beside ``data/queue.tsv``: the archive (``queue.2026-11-28.tsv``, finished
jobs, see archive.py) and the tracebacks (``queue.tracebacks.2026-11-28.tsv``, see
tracebacks.py). Both are tables with a header line, so ``grep ID data/queue*.tsv`` finds a
job's lines in all of them, and both are kept the same way, here:

- a file only grows by appends of whole lines, each under the file's own flock (never the
  queue's lock, so enqueues never wait for an append or its fsync), or is replaced whole by
  a rename;
- a writer killed in the middle of an append leaves a last line cut short. The next append
  first replaces the file by a copy of its whole lines (a rename, not a truncation: a reader
  that has the file open never sees bytes it has read change), so the piece never becomes a
  line; and every reader stops at a line without its newline;
- retention deletes whole files, by their day, under each file's flock, so an append in
  progress finishes first and a later one creates the file anew.
"""

import os
import re
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, NamedTuple, Optional, Tuple

from ..errors import QueueError
from .files import (check_regular, flock, fsync_directory, keep_mode_and_owner, lock_current,
                    open_own, temporary_file, unlock)
from ..log import logger


DAY_SECONDS = 86400
BLOCK = 1 << 20


def day_of(timestamp: float) -> str:
    """The UTC day of a timestamp, as dated files are named (YYYY-MM-DD)."""
    try:
        return time.strftime("%Y-%m-%d", time.gmtime(timestamp))
    except (OverflowError, OSError, ValueError):
        return "9999-12-31"


def day_start(day: str) -> float:
    """The timestamp of UTC midnight at the start of ``day`` (a name the pattern matched)."""
    import calendar  # only retention needs it, never a process that only enqueues
    year, month, date = (int(part) for part in day.split("-"))
    return calendar.timegm((year, month, date, 0, 0, 0))


class DatedFiles:
    """The dated files of one kind beside ``queue_path``: ``STEM.DAY.tsv`` (``kind`` empty)
    or ``STEM.KIND.DAY.tsv``, each starting with ``header``."""

    def __init__(self, queue_path: Path, header: bytes, kind: str = "") -> None:
        self.queue_path = queue_path
        self.directory = queue_path.parent
        self.header = header
        self.prefix = queue_path.stem + (f".{kind}" if kind else "")
        # Only a name that is a day (month 01-12, day 01-31): no writer of ours makes another.
        self.name = re.compile(re.escape(self.prefix) +
                               r"\.(\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01]))\.tsv\Z")

    def path(self, day: str) -> Path:
        return self.directory / f"{self.prefix}.{day}.tsv"

    def files(self, newest_first: bool = False) -> List[Tuple[str, Path]]:
        """(day, path) of every file of this kind, oldest first."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        days = sorted((m.group(1) for m in map(self.name.match, names) if m), reverse=newest_first)
        return [(day, self.path(day)) for day in days]

    def expired(self, drop_before: float) -> List[Path]:
        """The files whose whole day ended before ``drop_before`` (a name that is no day,
        ``2026-13-40``, is left alone: no writer of ours made it)."""
        expired = []
        for day, path in self.files():
            try:
                if day_start(day) + DAY_SECONDS <= drop_before:
                    expired.append(path)
            except (ValueError, OverflowError):
                continue
        return expired

    def unlink(self, path: Path, keep_if=None) -> bool:
        """Delete ``path`` with its flock held, unless ``keep_if(path)`` (asked under that
        flock) says to keep it; True if it is gone. A name that is not a regular file we may
        open (a planted FIFO or link, another user's file) is left, with a warning: no
        deletion of a dated file ever stops a worker run."""
        try:
            fd, _ = lock_current(str(path), os.O_RDONLY)
        except FileNotFoundError:
            return True
        except (OSError, QueueError) as error:
            logger().warning("%s: left as it is, not deleted (%s)", path,
                             getattr(error, "strerror", None) or error)
            return False
        try:
            if keep_if is not None and keep_if(path):
                return False
            os.unlink(path)
            return True
        finally:
            unlock(fd)

    def append(self, day: str, blocks: Iterable[bytes], model: Optional[os.stat_result],
               skip_present: int = 0, durable: bool = True) -> None:
        """Append ``blocks`` (each whole lines) to the file of ``day``, under its flock:
        created with the header and the mode and owner of ``model`` (the live file's stat)
        if new, and first replaced by its whole lines if its last line was cut short. With
        ``skip_present``, lines found among the file's last ``skip_present`` bytes (and a
        margin) are not appended again: where an append interrupted before the step that
        followed it left them. ``durable``: fsynced before the flock is let go. A planted
        link or FIFO raises QueueError."""
        target = self.path(day)
        try:
            fd, status = lock_current(str(target), os.O_RDWR | os.O_APPEND, create=True)
        except OSError as error:
            raise QueueError(f"cannot write {target} "
                             f"({getattr(error, 'strerror', None) or error})") from None
        size = status.st_size
        try:
            whole = whole_lines_end(fd, size)
            if whole < size:
                copy, size = self._copy_of_whole_lines(fd, target, size, whole)
                fd, old = copy, fd
                unlock(old)
            if size == 0:
                if model is not None:
                    keep_mode_and_owner(fd, model, target, attributes_of=str(self.queue_path))
                write_all(fd, self.header)
                if durable:
                    fsync_directory(self.directory)
            present = lines_in_tail(fd, size, skip_present) if skip_present else None
            for block in blocks:
                if present:
                    block = b"".join(line for line in block.splitlines(keepends=True)
                                     if line not in present)
                write_all(fd, block)
            if durable:
                os.fsync(fd)
        finally:
            unlock(fd)

    def _copy_of_whole_lines(self, fd: int, target: Path, size: int, whole: int):
        """Replace the file open at ``fd`` by a copy of its first ``whole`` bytes, its whole
        lines (the header alone if none), and return (the copy's descriptor, flocked, and
        its size). Under the file's flock.

        The bytes after them were cut short by a writer killed mid-append (or a full disk).
        A copy renamed into place, not a truncation: a reader or an admin rewrite that has
        the file open must never see bytes it has read change."""
        piece = os.pread(fd, min(size - whole, 200), whole)
        logger().warning("%s: dropped its last %d bytes, a line cut short by a process killed "
                       "while appending: %r", target, size - whole, piece)
        copy, temp = temporary_file(self.directory)
        try:
            flock(copy)  # before it takes the name: an append waiting on the old file waits here
            for start in range(0, whole, BLOCK):
                write_all(copy, os.pread(fd, min(BLOCK, whole - start), start))
            if whole == 0:  # its header was cut short: never visible without one
                write_all(copy, self.header)
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
        return copy, whole or len(self.header)


def whole_lines(path: Path) -> Iterator[bytes]:
    """The whole lines after the header of a dated file, without a lock; none if the file is
    missing, not a regular file, or its header is cut short. It stops at the first line
    without its newline: a line being appended, or cut short by a kill."""
    try:
        fd = open_own(str(path), os.O_RDONLY)
        check_regular(fd, str(path))
    except (OSError, QueueError):
        return
    with open(fd, "rb") as file:
        if not file.readline().endswith(b"\n"):
            return
        for line in file:
            if not line.endswith(b"\n"):
                return
            yield line


class Place(NamedTuple):
    """How far a reader has read one dated file: its inode, where its lines start (after the
    header), the end of the whole lines read (a byte offset), the number of the next line,
    and samples of what it read that the file must still hold: the first bytes after the
    header and the last ones before ``end``."""
    inode: int
    start: int
    end: int
    next_number: int
    head: bytes
    tail: bytes

    def still_in(self, fd: int, status: os.stat_result) -> bool:
        """Whether the file open at ``fd`` is the one read, grown or not."""
        return (self.inode == status.st_ino and self.end <= status.st_size
                and os.pread(fd, len(self.tail), self.end - len(self.tail)) == self.tail
                and os.pread(fd, len(self.head), self.start) == self.head)


SAMPLE = 64  # bytes of a followed file compared at each look, at its start and at the place


def follow(path: Path, place: Optional[Place],
           check_header: Callable[[bytes], None] = lambda header: None):
    """The whole lines of a dated file a reader at ``place`` has not read: (whether it read
    from the start, [(line number, line)], its new place, None to start over), or None if
    the file is missing. A file that is not a regular file raises QueueError.

    Such a file only grows by appends or is replaced whole by a rename, so the same file
    grown, still holding the bytes read at its start and just before ``place``, holds the
    lines read: only the ones after ``place`` are read. Otherwise (a new file, one that
    reuses a freed inode, one emptied or shortened in place) it is read from its start. An
    edit in place that keeps the file's size and the bytes compared is not seen: no writer
    of ours edits in place, and a hand edit that replaces the file (``sed -i``) is seen.
    ``check_header`` may raise on a first line that is no header of the file's kind."""
    try:
        fd = open_own(str(path), os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as error:  # a symbolic link planted there (see files.open_own)
        raise QueueError(f"cannot read {path} ({error.strerror or error})") from None
    status = check_regular(fd, str(path))  # closes it and raises if not a regular file
    with open(fd, "rb") as file:
        again = place is None or not place.still_in(fd, status)
        if again:
            header = file.readline()
            if not header.endswith(b"\n"):
                return True, [], None  # a header still being written: read it from the start
            check_header(header)
            place = Place(status.st_ino, len(header), len(header), 2, b"", header[-SAMPLE:])
        else:
            file.seek(place.end)
        found, end, number = [], place.end, place.next_number
        for line in file:
            if not line.endswith(b"\n"):
                break  # being appended, or cut short by a kill: not a line yet
            found.append((number, line))
            number += 1
            end += len(line)
        head = place.head
        if len(head) < SAMPLE and end > place.start + len(head):
            head = os.pread(fd, min(SAMPLE, end - place.start), place.start)
        tail = os.pread(fd, min(SAMPLE, end), end - min(SAMPLE, end))
    return again, found, Place(status.st_ino, place.start, end, number, head, tail)


def whole_lines_end(fd: int, size: int) -> int:
    """Where the file's whole lines end: just after its last newline (0 if it has none)."""
    end = size
    while end > 0:
        start = max(0, end - BLOCK)
        at = os.pread(fd, end - start, start).rfind(b"\n")
        if at >= 0:
            return start + at + 1
        end = start
    return 0


def lines_in_tail(fd: int, size: int, span: int) -> set:
    """The whole lines in the last ``span`` bytes of the file (plus a margin). Only a line
    identical to one about to be appended proves it is there; a line cut short proves
    nothing."""
    start = max(0, size - span - (64 << 10))
    lines = os.pread(fd, size - start, start).splitlines(keepends=True)
    if start:
        lines = lines[1:]  # it may start mid-line
    return {line for line in lines if line.endswith(b"\n")}


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
