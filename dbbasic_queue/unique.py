"""The unique-key index: which pending or processing job holds a ``unique_key``.

Kept per Queue and used with the table lock held, so a check and the append that follows it
are one atomic step across processes.
"""

import os
from typing import Dict, Optional

from .options import decode_options
from .storage import same_file


class UniqueKeys:
    """Which unique keys belong to a pending or processing job, and to which.

    Read from the whole file once, then kept up to date by reading only the lines appended
    since: statuses change only in rewrites, which give the file a new inode, and then the
    file is read whole again. So an enqueue with a unique key reads the whole file only
    after a worker has rewritten it. Used with the table lock held.
    """

    def __init__(self) -> None:
        self.indexed_fd: Optional[int] = None  # the file read, held open: see same_file
        self.read_to = 0
        self.active: Dict[str, str] = {}

    def job_with(self, fd: int, key: str) -> Optional[str]:
        """The id of the pending or processing job with ``key`` in the file open at ``fd``."""
        stat = os.fstat(fd)
        if not self._same_file(stat):
            if self.indexed_fd is not None:
                os.close(self.indexed_fd)
            self.indexed_fd, self.read_to, self.active = os.dup(fd), 0, {}
        rest, position = b"", self.read_to
        while position < stat.st_size:
            block = os.pread(fd, min(1 << 20, stat.st_size - position), position)
            if not block:
                break
            position += len(block)
            rest += block
            whole = rest.rfind(b"\n") + 1  # a half-written last line waits for its end
            self._note(rest[:whole])
            self.read_to += whole
            rest = rest[whole:]
        return self.active.get(key)

    def _same_file(self, current: os.stat_result) -> bool:
        return (self.indexed_fd is not None and same_file(self.indexed_fd, current)
                and self.read_to <= current.st_size)

    def _note(self, lines: bytes) -> None:
        for line in lines.splitlines():
            if b"unique_key" not in line:
                continue
            # Ten plain fields, as this queue writes them; a line that is not (the header,
            # a corrupt line) cannot hold an active key.
            fields = line.rstrip(b"\r").split(b"\t")
            if len(fields) != 10 or fields[3] not in (b"pending", b"processing"):
                continue
            options = fields[9]
            if options.startswith(b'"') and options.endswith(b'"'):
                options = options[1:-1].replace(b'""', b'"')
            try:
                key = decode_options(options.decode("utf-8")).get("unique_key")
            except ValueError:
                continue
            if isinstance(key, str):
                self.active[key] = fields[0].decode("utf-8", "replace")
