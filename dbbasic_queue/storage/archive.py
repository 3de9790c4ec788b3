"""Archive files: completed and cancelled jobs leave ``queue.tsv`` as their result is written.

They move to a file of the UTC day they finished, beside the queue: ``data/queue.2026-11-28.tsv``,
a table with the same header and lines, so ``grep ID data/queue*.tsv`` finds any job. The
live file keeps what workers must look at (pending, processing, failed), so a worker's cost
follows its work, not the history kept; retention deletes
whole archive files, at a cost that follows the files, not the jobs in them.

A worker moves lines during a rewrite it does anyway: they are spooled into temporary files,
and appended to their archive files (fsynced, under each archive file's own flock: see
history.py, which keeps every dated file) before the queue's lock is taken to rename the new
live file into place, so enqueues never wait for the archive's fsync. A crash in between, or a rewrite that loses its race and starts again,
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
import mmap
import os
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from ..model.job import HEADER, reads
from .files import check_regular, open_own, temporary_file
from .history import BLOCK, DatedFiles, Place, day_of, follow
from .table import Editor, Table

ARCHIVE_AFTER_SECONDS = 0  # a finished job leaves queue.tsv in the next rewrite after its result
ARCHIVE_MIN_LINES = 1000  # moving lines is worth a rewrite of its own from this many


class Archive:
    """The archive files of one queue file. Every write or deletion of one holds its flock
    (a move's append, an admin rewrite's rename, a removal), and all but a move's append
    hold the queue's lock too."""

    def __init__(self, table: Table) -> None:
        self.queue_path = table.path
        self.directory = table.path.parent
        self.lock_path = table.lock_path
        self.table = table
        self.dated = DatedFiles(table.path, HEADER)

    def path(self, day: str) -> Path:
        return self.dated.path(day)

    def files(self, newest_first: bool = False) -> List[Tuple[str, Path]]:
        """(day, path) of every archive file, oldest first."""
        return self.dated.files(newest_first)

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
            return self.dated.unlink(path, keep_if=self._holds_a_job)

    def remove_expired(self, drop_before: float) -> int:
        """Delete the archive files whose every job finished before ``drop_before``."""
        expired = self.dated.expired(drop_before)
        if not expired:
            return 0
        with self.table.lock():
            for path in expired:
                self.dated.unlink(path)
        return len(expired)

    def _holds_a_job(self, path: Path) -> bool:
        return any(True for _ in self.table_of(path).lines())

    def take(self, day: str, spooled, model: os.stat_result) -> None:
        """Append the lines spooled in the file ``spooled`` (open for reading, at its start) to
        the file of ``day`` (see DatedFiles.append), skipping those its end already holds: an
        earlier move of the same lines killed before its rename left them there. The live
        file's stat is ``model``, for a new file's mode and owner."""
        spooled.readline()  # its header
        self.dated.append(day, _lines_in_blocks(spooled), model,
                          skip_present=os.fstat(spooled.fileno()).st_size)


class ArchiveTable(Table):
    """An archive file: a Table sharing its queue's lock, whose readers and rewrites know the
    one way its writer leaves it broken, a last line cut short (see history.py)."""

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

    def follow(self, place: Optional[Place]):
        """The whole job lines a reader at ``place`` has not read (see history.follow): an
        archive file only grows by appends, or is replaced whole."""
        return follow(self.path, place, self._check_header)

    def rewrite(self, start_edit, resume=None):
        """Table.rewrite, dropping a last line cut short instead of ending it: its job is
        still in the live file (see history.py). None, as for no file,
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
            entry = self.files[day] = (open(fd, "w+b", buffering=BLOCK), temp)
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


def _lines_in_blocks(source) -> Iterator[bytes]:
    rest = b""
    while True:
        data = source.read(BLOCK)
        if not data:
            if rest:
                yield rest if rest.endswith(b"\n") else rest + b"\n"
            return
        data = rest + data
        whole = data.rfind(b"\n") + 1
        rest = data[whole:]
        if whole:
            yield data[:whole]
