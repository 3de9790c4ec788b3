"""The queue file as storage: a dbbasic-tsv table, its lock, appends and atomic rewrites.

The file is exactly what dbbasic-tsv writes and reads (``TSV("queue", COLUMNS)``): a header,
tab-separated fields, CSV quoting for fields that hold a double quote (``"{""to"": 1}"``), and
the lock file ``<table>.lock`` beside it. On top of dbbasic-tsv's API this layer adds what a
queue needs and dbbasic-tsv 1.0.2 lacks: a locked append that cannot splice two jobs into one
line, atomic rewrites (temporary file, fsync, rename, all under the lock) that keep the file's
owner, mode and extended attributes, and a line-by-line reader, so one broken line can only
hide itself. It creates the table itself (dbbasic-tsv's constructor writes side files through
any symbolic link planted in the directory), and opens every file through ``files.py``. A
rewrite passes each line through an ``Editor``, which decides it; a ``Bookmark`` lets a
worker's next rewrite copy what it has already looked at in large blocks.

Two locks guard the file. ``<table>.lock`` is dbbasic-tsv's, so its own insert and update
exclude the queue's writers. And each writer of the queue flocks the table file itself and
checks it is still the one at the path: a lock file can be deleted while held, and the
next process would then lock a new one while the holder still writes; the table file is
only ever replaced with its flock held, so this lock cannot be bypassed that way.
"""

import contextlib
import itertools
import os
import threading
from pathlib import Path
from stat import S_ISREG
from typing import Callable, Iterator, NamedTuple, Optional, Set, Tuple

from ..errors import QueueError
from .files import (TEMP_PREFIX, HeldLock, check_regular, flock, fsync_directory, is_at,
                    keep_mode_and_owner, lock_current, lock_file, lock_kept, open_own, refusal,
                    temporary_file, unflock)
from ..model.job import COLUMNS, HEADER, KNOWN_HEADERS

_BLOCK = 1 << 20
# A new table's header exactly as dbbasic-tsv's TSV() writes it: its csv writer ends lines
# with CRLF (the queue's own lines end with LF; both read the same everywhere).
NEW_TABLE_HEADER = HEADER.rstrip(b"\n") + b"\r\n"


class Editor:
    """Decides each job line of a rewrite: returns the line to write in its place, or None
    to drop it. It sets ``changed`` once it has changed anything (a rewrite that changes
    nothing is skipped), and ``done`` once it will change nothing more (the rest of the file
    is then copied as it is, without a look at each line)."""

    changed = False
    done = False
    position = 0  # set before each call: where the returned line starts in the new file
    resume_offset: Optional[int] = None  # set by the editor: see Bookmark
    # A last line without its newline, left by a writer killed mid-append, is ended and kept
    # (a corrupt line); False drops it, for a file whose every such piece has its job
    # elsewhere (an archive file's, see archive.py).
    ends_torn_line = True
    bookmark: Optional["Bookmark"] = None  # set by a rewrite that took place
    # The ids of the only lines the editor needs to see (None: every line); the rest are
    # copied as they are, without a call.
    only: Optional[Set[bytes]] = None

    def __call__(self, line: bytes) -> Optional[bytes]:
        return line

    def before_lock(self) -> None:
        """Called once the copy of the lines read so far is written and fsynced, before the
        queue's lock is taken to rename it (with the lock already held from the third try
        on): what must be durable before the new file is, and needs no lock on the queue
        (archived lines, see archive.py). Lines the locked pass then sees stay as they are
        unless the editor can settle them without it."""

    def abandon(self) -> None:
        """Called when this editor's rewrite will not be renamed into place."""

    def tail(self) -> bytes:
        """Called once, with the lock held, after the last line: lines to add at the end of
        the new file (a job enqueued by the rewrite itself, see dependents.py)."""
        return b""


def same_file(fd: int, current: os.stat_result) -> bool:
    """Whether ``current`` describes the file open at ``fd``. Comparing inode numbers is
    enough only because ``fd`` holds that file open: a rewrite frees the old file's inode,
    and the next rewrite often gets the same number."""
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (current.st_dev, current.st_ino)


class Bookmark(NamedTuple):
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


def edit_lines(source, out, edit: Editor, limit: Optional[int]) -> int:
    """Copy complete lines from ``source`` through ``edit``, reading at most ``limit`` bytes
    (all if None, with the lock held: then a final line without a newline, left by a writer
    killed mid-append, is kept as it is and ended, or dropped: see ``ends_torn_line``).
    Returns the bytes consumed."""
    if edit.only is not None:
        return edit_only_lines(source, out, edit, limit)
    consumed, written = 0, out.tell()
    done = edit.done  # changes only when the editor sees a line
    for line in source:
        if done:
            return consumed + copy_verbatim(source, out, line, None if limit is None else limit - consumed,
                                            edit.ends_torn_line)
        size = len(line)
        if not line.endswith(b"\n"):
            if limit is not None:
                break  # still being appended: the locked pass copies it
            if edit.ends_torn_line:
                out.write(line + b"\n")
        elif limit is not None and consumed + size > limit:
            break
        else:
            edit.position = written
            new = edit(line)
            if new is not None:
                written += out.write(new)
            done = edit.done
            if edit.only is not None and not done:  # from here on it sees only these lines
                consumed += size
                return consumed + edit_only_lines(source, out, edit, None if limit is None
                                                  else limit - consumed)
        consumed += size
    return consumed


def edit_only_lines(source, out, edit: Editor, limit: Optional[int]) -> int:
    """edit_lines for an editor that sees only the lines of ``edit.only``: the file is read
    in blocks, and the runs of lines between those are written as they are, in one write
    each, so a line it does not see costs a split and a set lookup."""
    only = edit.only
    widths = {len(job_id) for job_id in only}
    # One width for every id (the usual case): a line's first bytes are enough to pass it
    # over (an id has no tab, so a shorter one never matches); a longer id sharing them is
    # shown to the editor, which judges it by its whole id.
    width = next(iter(widths)) if len(widths) == 1 else None
    consumed, written, carry = 0, out.tell(), b""
    while not edit.done:
        budget = None if limit is None else limit - consumed - len(carry)
        block = source.read(_BLOCK if budget is None else min(_BLOCK, budget))
        if not block:
            if carry and limit is None:  # a last line without its newline (see edit_lines)
                if edit.ends_torn_line:
                    out.write(carry + b"\n")
                consumed += len(carry)
            return consumed
        data = carry + block
        end = data.rfind(b"\n") + 1
        pieces = data[:end].split(b"\n")
        pieces.pop()  # after the last newline
        # The lines to show the editor, found in comprehensions, and where each one ends
        # (its newline included), in C: the loop below runs once per line shown.
        shown = _shown(pieces, only, width, 0)
        ends = list(itertools.accumulate(map(len, pieces))) if shown else ()
        run = 0  # where the run of lines not written yet starts in data
        offset = end
        index = 0
        while index < len(shown):
            number = shown[index]
            index += 1
            start = (ends[number - 1] + number) if number else 0
            after = ends[number] + number + 1
            written += out.write(data[run:start])
            edit.position = written
            seen = len(only)
            new = edit(data[start:after])
            if new is not None:
                written += out.write(new)
            run = after
            if edit.done:
                offset = after
                break
            if len(only) != seen:  # the editor asked to see more lines (dependents.py)
                widths.update(len(job_id) for job_id in only)
                width = next(iter(widths)) if len(widths) == 1 else None
                shown, index = _shown(pieces, only, width, number + 1), 0
        out.write(data[run:offset])
        written += offset - run
        consumed += offset
        carry = data[offset:]  # what follows the last line looked at (all of it, when done)
    return consumed + copy_verbatim(source, out, carry, None if limit is None else limit - consumed,
                                    edit.ends_torn_line)


def _shown(pieces, only: Set[bytes], width: Optional[int], first: int):
    """The numbers of the lines among ``pieces`` from ``first`` on whose id is in ``only``
    (found by their first ``width`` bytes when every id has that width)."""
    rest = enumerate(pieces[first:] if first else pieces, first)
    if width:
        return [number for number, piece in rest if piece[:width] in only]
    return [number for number, piece in rest if piece[:piece.find(b"\t")] in only]


def copy_verbatim(source, out, data: bytes, budget: Optional[int], end_torn: bool = True) -> int:
    """Copy ``data`` and what follows it in ``source`` unchanged, in large blocks. With a
    ``budget`` (the pass without the lock), at most that many bytes and only whole lines;
    without, to the end, ending a last line that has no newline (dropping it if not
    ``end_torn``). Returns the bytes consumed (``source`` may have been read beyond them)."""
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
        if end_torn:
            out.write(data + b"\n")
        consumed += len(data)
    return consumed


# A forked child counts one more: the descriptors its parent kept are shared with the
# parent (an flock belongs to the open file description), so the child opens its own.
_generation = 0


def _count_a_fork() -> None:
    global _generation
    _generation += 1


os.register_at_fork(after_in_child=_count_a_fork)


class KeptFiles:
    """The lock file and the table file one Table keeps open between appends, so an append
    opens and closes nothing: each is checked to be still the file it was, flocked again
    and checked to still have its name (a replaced table, a deleted lock file, is opened
    anew; see files.lock_kept). ``mutex`` makes the threads of the
    process take turns, as the flocks of one descriptor cannot; ``end`` is (inode, size)
    where the last append left the table file. The table file kept open holds a replaced
    version's disk space until the next append opens the new one."""

    def __init__(self) -> None:
        self.generation = _generation
        self.mutex = threading.Lock()
        self.lock: Optional[Tuple[int, os.stat_result]] = None  # (descriptor, its stat)
        self.table: Optional[Tuple[int, os.stat_result]] = None
        self.end: Optional[Tuple[int, int]] = None

    def __del__(self) -> None:
        if self.generation != _generation:
            return  # a forked child's copies: the child may have given their numbers away
        for kept in (self.lock, self.table):
            if kept is not None:
                with contextlib.suppress(OSError):
                    os.close(kept[0])


class Table:
    """One queue file and its lock. Cheap to create; after its first append it keeps the
    lock file and the table file open for the next (see KeptFiles)."""

    def __init__(self, path, lock_path=None) -> None:
        self.path = Path(path).absolute()
        if self.path.suffix != ".tsv" or not self.path.stem:
            raise ValueError(f"queue file {str(path)!r} must be a .tsv file, as dbbasic-tsv "
                             f"names its tables, for example 'data/queue.tsv'")
        # An archive file shares its queue's lock: every file of one queue has one writer at a time.
        self.lock_path = self.path.with_suffix(".lock") if lock_path is None else Path(lock_path)
        self._file, self._lock_file = str(self.path), str(self.lock_path)  # os.open takes str fastest
        self._header_checked = False  # once per Table: only this module rewrites headers
        self._kept: Optional[KeptFiles] = None

    @contextlib.contextmanager
    def lock(self) -> Iterator[HeldLock]:
        """Hold dbbasic-tsv's exclusive table lock (flock on ``<table>.lock``).

        Every writer takes it: appends, rewrites, and dbbasic-tsv's own insert and update.
        A fresh descriptor each time, so threads and forked processes exclude each other too.
        """
        held = HeldLock(self._lock_file)
        try:
            yield held
        finally:
            held.release()

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
        kept = self._kept
        if kept is None or kept.generation != _generation:
            kept = self._kept = KeptFiles()
        with kept.mutex:  # the flocks below are the descriptors': they exclude no thread
            lock, kept.lock = self._lock_kept(kept.lock), None  # back in kept once released
            try:
                # The table's own flock (see the module's docstring); a new file is created
                # empty, and gets dbbasic-tsv's header below.
                table, kept.table = kept.table, None
                fd, status = lock_kept(table, self._file, os.O_RDWR | os.O_APPEND, create=True)
                try:
                    if not self._header_checked:  # once per Table, like the lock file's kind
                        if not S_ISREG(lock[1].st_mode):  # a FIFO, say: a worker refuses it
                            raise refusal(self._lock_file)
                        self._check_header(os.pread(fd, 200, 0).split(b"\n", 1)[0])
                        self._header_checked = True
                    if unless is not None:
                        found = unless(fd)
                        if found is not None:
                            return found
                    size = status.st_size  # taken with the table's flock held
                    if size == 0:  # new (or its creator was killed before it wrote the header)
                        line = NEW_TABLE_HEADER + line
                    elif (status.st_ino, size) != kept.end and os.pread(fd, 1, size - 1) != b"\n":
                        # A writer killed in the middle of a write left half a line: end it
                        # there, so it stays one corrupt line and does not swallow this job.
                        # (Not asked when the file ends where this process's last append
                        # left it: then that append wrote its last byte, a newline.)
                        line = b"\n" + line
                    _write_all(fd, line)
                    kept.end = (status.st_ino, size + len(line))
                    if durable:
                        os.fsync(fd)
                    return None
                finally:
                    unflock(fd)  # explicitly (see files.py): the unique-key index keeps a dup
                    kept.table = (fd, status)
            finally:
                unflock(lock[0])
                kept.lock = lock

    def _lock_kept(self, kept: Optional[Tuple[int, os.stat_result]]) -> Tuple[int, os.stat_result]:
        """The lock file flocked, and its stat: through the descriptor kept from the last
        append while it still has its name; else opened anew (its directory made, if gone)."""
        if kept is not None:
            try:
                return lock_kept(kept, self._lock_file, os.O_RDONLY | os.O_CREAT, after=False)
            except FileNotFoundError:  # the directory went
                pass
        fd = lock_file(self._lock_file)
        return fd, os.fstat(fd)

    def signature(self) -> Optional[tuple]:
        """(inode, size, mtime) of the file, or None: changes whenever a job is added or
        the file is rewritten. A cheap stat, for an idle worker to watch."""
        try:
            stat = os.lstat(self._file)  # a link planted there is refused by the next run
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_size, stat.st_mtime_ns

    def holds(self, bookmark: Optional[Bookmark]) -> bool:
        """Whether the file at the path is still the one ``bookmark`` was made in: only
        appended to since its rewrite."""
        if bookmark is None:
            return False
        try:
            return bookmark.still_current(os.stat(self._file))
        except FileNotFoundError:
            return False

    def lines(self, skip: int = 0) -> Iterator[Tuple[int, bytes]]:
        """Yield (line number, line) for every job line after the first ``skip``, without
        the lock.

        A rename replaces the file whole, so an open file is always one consistent version;
        a last line still being appended (no newline yet) is not yielded.
        """
        try:
            fd = open_own(self._file, os.O_RDONLY)
        except FileNotFoundError:
            return
        check_regular(fd, self._file)
        with open(fd, "rb") as file:
            self._check_header(file.readline())
            # Only the last line can lack its newline (an append ends a torn line first), so
            # the lines skipped are whole, unless the file ends among them.
            next(itertools.islice(file, skip, skip), None)
            for number, line in enumerate(file, start=2 + skip):
                if line.endswith(b"\n"):
                    yield number, line

    def rewrite(self, start_edit: Callable[[], Editor],
                resume: Optional[Bookmark] = None) -> Optional[Editor]:
        """Rewrite the file atomically, passing every job line through a fresh editor.

        Returns the editor that produced the file now on disk (None if there is no file), so
        the caller reads what it decided from it. The long part (reading and writing every
        line) runs without the lock, so enqueues are not held up; then, under the lock, lines
        appended meanwhile go through the same editor, the copy is fsynced and renamed over
        the table. If another rewrite replaced the file meanwhile, it starts again; from the
        third try on it holds the lock throughout, so it cannot starve (only a lock file
        deleted while it waits lets another rewrite in, see ``_replace``). With a ``resume``
        bookmark still valid, lines before it are copied without the editor seeing them; the
        new file's bookmark is in ``edit.bookmark`` if the editor set ``resume_offset``.
        """
        attempt = 0
        while True:
            hold_throughout = attempt >= 2
            with self.lock() if hold_throughout else contextlib.nullcontext() as held:
                source = self._open_source(locked=hold_throughout)
                if source is None:
                    return None
                with source:
                    try:
                        done, edit = self._try_rewrite(source, start_edit, held, resume)
                    finally:
                        if hold_throughout:
                            unflock(source.fileno())
            if done:
                return edit
            attempt += 1

    def _open_source(self, locked: bool):
        """The table file open for reading (flocked too if ``locked``), or None if none."""
        try:
            if locked:
                fd, _ = lock_current(self._file, os.O_RDONLY)
            else:
                fd = open_own(self._file, os.O_RDONLY)
                check_regular(fd, self._file)
        except FileNotFoundError:
            return None
        return open(fd, "rb")

    def _try_rewrite(self, source, start_edit, held: Optional[HeldLock],
                     resume: Optional[Bookmark]):
        before = os.fstat(source.fileno())
        edit = start_edit()
        fd, temp_path = temporary_file(self.path.parent)
        try:
            with open(fd, "wb") as out:
                header = source.readline()
                self._check_header(header)
                # A file written before the options column gets its header now; its
                # old lines, with one field less, read as jobs without options.
                out.write(header if header.rstrip(b"\r\n") == HEADER.rstrip(b"\n") else HEADER)
                consumed = len(header)
                if resume is not None and resume.still_current(before):
                    consumed += copy_verbatim(source, out, b"", resume.offset - consumed)
                    source.seek(consumed)  # the copy reads ahead in blocks
                consumed += edit_lines(source, out, edit, before.st_size - consumed)
                if not edit.changed:
                    return True, edit  # nothing to change (lines appended meanwhile wait)
                if held is None:
                    out.flush()
                    os.fsync(out.fileno())  # the bulk of the data, before taking the lock
                edit.before_lock()
                with self.lock() if held is None else contextlib.nullcontext(held) as held:
                    if not self._replace(source, before, consumed, out, temp_path, edit, held):
                        return False, None  # another rewrite won; start again from its file
                    temp_path = None
                    fsync_directory(str(self.path.parent))
                    if edit.resume_offset is not None:
                        edit.bookmark = Bookmark(os.dup(out.fileno()), edit.resume_offset)
                    return True, edit
        finally:
            if temp_path is not None:
                edit.abandon()
                os.unlink(temp_path)

    def _replace(self, source, before: os.stat_result, consumed: int, out, temp_path: str,
                 edit: Editor, held: HeldLock) -> bool:
        """With the lock held: copy through ``edit`` the lines appended to ``source`` since
        ``consumed``, then rename the copy over the table; False if the table is no longer
        the file ``source`` (``before`` its stat) and nothing was renamed."""
        # The table's own flock: no writer of this queue appends to it or renames it now.
        flock(source.fileno())
        tail = None
        try:
            while True:
                if not is_at(self._file, before):
                    return False
                source.seek(consumed)
                consumed += edit_lines(source, out, edit, None)
                if tail is None:
                    tail = edit.tail()
                    out.write(tail)
                out.flush()
                keep_mode_and_owner(out.fileno(), before, self._file, source.fileno())
                os.fsync(out.fileno())
                if not held.lost():
                    break
                # The lock file was deleted or replaced while held: dbbasic-tsv's own writers,
                # which do not flock the table, may be writing. Lock the new one, in the usual
                # order (lock file, then table), and look again.
                unflock(source.fileno())
                held.relock()
                flock(source.fileno())
            os.replace(temp_path, self.path)
            return True
        finally:
            unflock(source.fileno())

    def remove_stale_temporary_files(self, older_than: float, now: float) -> None:
        """Delete temporary files left by rewrites that were killed before their rename."""
        with contextlib.suppress(FileNotFoundError), os.scandir(self.path.parent) as entries:
            for entry in entries:
                if entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        if entry.stat(follow_symlinks=False).st_mtime < now - older_than:
                            os.unlink(entry.path)


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written < len(data):  # only for huge lines, or a signal in the middle
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view):]
