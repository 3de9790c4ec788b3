"""The unique-key index: which pending or processing job holds a ``unique_key``.

Kept per Queue and used with the table lock held, so a check and the append that follows it
are one atomic step across processes.
"""

import os
import weakref
from typing import Dict, Optional, Union

from ..errors import CorruptLineError
from ..model.job import ACTIVE, Job, parse_line, peek_unique_key
from ..model.options import decode_options
from .table import same_file


class UniqueKeys:
    """Which unique keys belong to a pending or processing job, and to which.

    Read from the whole file once, then kept up to date by reading only the lines appended
    since: statuses change only in rewrites, which give the file a new inode, and then the
    file is read whole again. So an enqueue with a unique key reads the whole file only
    after a worker has rewritten it. Used with the table lock held.

    The index keeps where each key's line starts; the first time a key is asked for, its
    line is judged like any other (``parse_line``), so a corrupt line holds no key, and the
    verdict is kept: a line does not change until a rewrite, which starts a new index.
    The file read is held open between calls (see storage.same_file), one descriptor per
    index, closed when the index is dropped with its Queue: a web app that builds a Queue
    per request holds none once the request is over.
    """

    def __init__(self) -> None:
        self.indexed_fd: Optional[int] = None  # the file read, held open: see same_file
        self.read_to = 0
        # unique key -> where its job's line starts, or, once that line is judged, its job's id
        self.active: Dict[str, Union[int, str]] = {}
        self._release: Optional[weakref.finalize] = None  # closes indexed_fd

    def job_with(self, fd: int, key: str) -> Optional[str]:
        """The id of the pending or processing job with ``key`` in the file open at ``fd``."""
        stat = os.fstat(fd)
        if not self._same_file(stat):
            self.close()
            self.indexed_fd = os.dup(fd)
            self._release = weakref.finalize(self, os.close, self.indexed_fd)
        rest, position = b"", self.read_to
        while position < stat.st_size:
            block = os.pread(fd, min(1 << 20, stat.st_size - position), position)
            if not block:
                break
            position += len(block)
            rest += block
            whole = rest.rfind(b"\n") + 1  # a half-written last line waits for its end
            self._note(rest[:whole], self.read_to)
            self.read_to += whole
            rest = rest[whole:]
        found = self.active.get(key)
        if not isinstance(found, int):
            return found  # None, or the id of a line already judged
        job = _job_at(fd, found)
        if job is None or job.status not in ACTIVE or \
                decode_options(job.options).get("unique_key") != key:
            del self.active[key]
            return None
        self.active[key] = job.id
        return job.id

    def close(self) -> None:
        """Forget the index and close the file it held; the next call reads the file again."""
        if self._release is not None:
            self._release()  # closes the descriptor, once
        self._release, self.indexed_fd, self.read_to, self.active = None, None, 0, {}

    def _same_file(self, current: os.stat_result) -> bool:
        return (self.indexed_fd is not None and same_file(self.indexed_fd, current)
                and self.read_to <= current.st_size)

    def _note(self, lines: bytes, offset: int) -> None:
        start = 0
        while start < len(lines):
            end = lines.index(b"\n", start) + 1
            key = peek_unique_key(lines[start:end])
            if key is not None:
                self.active[key] = offset + start
            start = end


def _job_at(fd: int, offset: int) -> Optional[Job]:
    """The job whose line starts at ``offset``, or None if that line is corrupt."""
    line = b""
    while True:
        block = os.pread(fd, 1 << 16, offset + len(line))
        end = block.find(b"\n")
        if end >= 0 or not block:
            line += block[:end + 1] if end >= 0 else block
            break
        line += block
    try:
        return parse_line(line)
    except CorruptLineError:
        return None
