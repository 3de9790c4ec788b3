"""Archive files: completed and cancelled jobs leave ``queue.tsv`` an hour after they finish.

They move to a file of the UTC day they finished, beside the queue: ``data/queue.2026-11-28.tsv``,
a table with the same header and lines, so ``grep ID data/queue*.tsv`` finds any job. The
live file keeps what workers must look at (pending, processing, failed, and the last hour's
finished jobs), so a worker's cost follows its work, not the history kept; retention deletes
whole archive files, at a cost that follows the files, not the jobs in them.

A worker moves lines during a rewrite it does anyway: they are spooled into temporary files,
and appended to their archive files (fsynced) under the lock just before the new live file is
renamed into place. A crash in between leaves a job in both files, never in neither; the next
move skips lines its archive file already ends with.
"""

import calendar
import contextlib
import mmap
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from .editing import Editor
from .errors import QueueError
from .files import check_regular, fsync_directory, keep_mode_and_owner, open_own
from .job import HEADER, reads
from .storage import TEMP_PREFIX, Table

ARCHIVE_AFTER_SECONDS = 3600  # a finished job stays in queue.tsv at least this long
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
    """The archive files of one queue file. Every write holds the queue's lock."""

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

    def table_of(self, path: Path) -> Table:
        """An archive file as a Table sharing the queue's lock, for admin rewrites."""
        return Table(path, lock_path=self.lock_path)

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
                    at = data.rfind(needle)
                    if at < 0:
                        continue
                    end = data.find(b"\n", at + 1)
                    if end < 0:
                        continue  # a last line still being appended
                    return path, None, data[at + 1:end + 1]
            except (FileNotFoundError, ValueError):  # gone meanwhile, or empty
                continue
        return None

    def line_number(self, path: Path, line: bytes) -> int:
        """The number of ``line`` in an archive file (for a message about a corrupt line)."""
        for number, candidate in self.table_of(path).lines():
            if candidate == line:
                return number
        return 0

    def remove_expired(self, drop_before: float) -> int:
        """Delete the archive files whose every job finished before ``drop_before``."""
        expired = [path for day, path in self.files()
                   if _day_start(day) + _DAY <= drop_before]
        if not expired:
            return 0
        with self.table.lock():
            for path in expired:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        return len(expired)

    def take(self, day: str, spooled, model: os.stat_result) -> None:
        """Append the lines spooled in the file ``spooled`` (open for reading, at its start) to
        the file of ``day``, creating it with the header and the live file's mode and owner
        (``model``) if new. Called under the lock."""
        target = self.path(day)
        try:
            fd = open_own(str(target), os.O_RDWR | os.O_APPEND | os.O_CREAT, model.st_mode & 0o666)
        except OSError as error:  # a planted link or FIFO is a QueueError saying so
            raise QueueError(f"cannot write the archive file {target} ({error.strerror})") from None
        size = check_regular(fd, str(target)).st_size  # a FIFO would swallow the lines
        try:
            if size == 0:
                keep_mode_and_owner(fd, model, target, attributes_of=str(self.queue_path))
                os.write(fd, HEADER)
                fsync_directory(self.directory)
            elif os.pread(fd, 1, size - 1) != b"\n":
                os.write(fd, b"\n")  # end a line cut short by a full disk or a kill
            spooled.readline()  # its header
            already = _lines_in_tail(fd, size, os.fstat(spooled.fileno()).st_size)
            for block in _lines_in_blocks(spooled):
                if already:
                    block = b"".join(line for line in block.splitlines(keepends=True)
                                     if line not in already)
                _write_all(fd, block)
            os.fsync(fd)
        finally:
            os.close(fd)


class RetiringEditor(Editor):
    """An editor that, as a rewrite passes finished lines (``retire``), drops those past
    retention and moves those past the archive age into ``spool``, committed with the
    rewrite. Neither is a change by itself (only a rewrite done anyway drops or moves),
    except that ARCHIVE_MIN_LINES lines to move make the rewrite worth doing."""

    drop_before: Optional[float] = None
    archive_before: Optional[float] = None
    spool: Optional["Spool"] = None
    dropped = 0
    archived = 0

    def retire(self, line: bytes, finished_at: int) -> Optional[bytes]:
        """None if the line is dropped or moved; the line itself if it stays."""
        if self.drop_before is not None and finished_at < self.drop_before and reads(line):
            self.dropped += 1
            return None
        if self.spool is not None and finished_at < self.archive_before and reads(line):
            self.spool.add(line, finished_at)
            self.archived += 1
            if self.archived >= ARCHIVE_MIN_LINES:
                self.changed = True
            return None
        return line

    def commit(self) -> None:
        if self.spool is not None:
            self.spool.commit()

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
            fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp",
                                        dir=self.archive.directory)
            # Read back through this descriptor, never by name: the directory may be writable
            # by another user, who could swap the name for a link to a file of root's.
            entry = self.files[day] = (open(fd, "w+b", buffering=_BLOCK), temp)
            entry[0].write(HEADER)
        entry[0].write(line)
        self.count += 1

    def commit(self) -> None:
        """Append the spooled lines to their archive files; with the lock held."""
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
    return calendar.timegm(time.strptime(day, "%Y-%m-%d"))


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
