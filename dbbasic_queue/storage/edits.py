"""The admin verbs' edits (cancel, retry, run now, purge): ``EachJob``, the editor of their
rewrites of the queue file, and the edits that reach into the archive files, purging them and
bringing a retried job back from one into the queue file. Each is an atomic rewrite under the
queue's lock."""

import os
from typing import Any, Callable, Optional

from ..errors import CorruptLineError
from ..model.job import Job, parse_line
from .table import Editor

DROP = object()  # what an EachJob change returns to remove the job


class EachJob(Editor):
    """The rewrite behind cancel, retry and purge: ``change(job)`` returns the job's new
    version, DROP, or None to leave it. Corrupt lines are left alone. With ``only_id``,
    only that job is looked at, and the rest is copied once it is found."""

    def __init__(self, change: Callable[[Job], Any], only_id: Optional[str] = None) -> None:
        self.change = change
        self.prefix = None if only_id is None else only_id.encode() + b"\t"
        self.count = 0

    def __call__(self, line: bytes) -> Optional[bytes]:
        if self.prefix is not None and not line.startswith(self.prefix):
            return line
        try:
            new = self.change(parse_line(line))
        except CorruptLineError:
            return line
        if self.prefix is not None:
            self.done = True
        if new is None:
            return line
        self.count += 1
        self.changed = True
        return None if new is DROP else new.to_line()



def purge_archives(queue, change: Callable) -> int:
    """Apply ``change`` (DROP or None for each job) to every archive file of ``queue``;
    delete a file left with no job. Returns how many jobs were dropped."""
    purged = 0
    for _, path in queue.archive.files():
        edit = queue.archive.table_of(path).rewrite(lambda: EachJob(change))
        purged += 0 if edit is None else edit.count
        if edit is not None and edit.count:
            queue.archive.remove_if_jobless(path)  # a move may have put a job in since
    return purged


def bring_back(queue, job: Job, archived_in, new: Job) -> bool:
    """Put an archived job's new version in the live file, then drop it from its archive
    file (a crash in between leaves both; the live one wins). False if the live file has
    the job already."""
    prefix = job.id.encode() + b"\t"
    twin = queue.table.append(new.to_line(), durable=queue.durable,
                              unless=lambda fd: "there" if has_line(fd, prefix) else None)
    if twin is not None:
        return False
    queue.archive.table_of(archived_in).rewrite(lambda: EachJob(lambda old: DROP, only_id=job.id))
    return True


def has_line(fd: int, prefix: bytes) -> bool:
    """Whether the file open at ``fd`` has a line starting with ``prefix``."""
    with open(os.dup(fd), "rb") as file:
        file.seek(0)
        return any(line.startswith(prefix) for line in file)
