"""The admin verbs' edits (cancel, retry, run now, purge): ``EachJob``, the editor of their
rewrites of the queue file, and the edits that reach into the archive files, purging them and
bringing a retried job back from one into the queue file. Each is an atomic rewrite under the
queue's lock."""

import os
from typing import Any, Callable, Optional

from ..errors import CorruptLineError
from ..model.job import Job, line_id, parse_line
from .table import Editor

DROP = object()  # what an EachJob change returns to remove the job


class EachJob(Editor):
    """The rewrite behind cancel, retry and purge: ``change(job)`` returns the job's new
    version, DROP, or None to leave it. Corrupt lines are left alone. With ``only_id``,
    only that job is looked at, and the rest is copied once it is found and the jobs
    waiting for a job it ended are told (see dependents.py)."""

    def __init__(self, change: Callable[[Job], Any], only_id: Optional[str] = None) -> None:
        self.change = change
        self.prefix = None if only_id is None else only_id.encode() + b"\t"
        self.count = 0
        self.found = False
        self.dependents = None  # made for the first job changed that others may wait for

    @property
    def done(self) -> bool:
        return self.found and not (self.dependents and self.dependents.owed)

    def __call__(self, line: bytes) -> Optional[bytes]:
        new = self._change(line)
        if self.dependents is not None and self.dependents.owed and new is not None:
            # Told after its own change: what the edit asked of it holds (a job moved away
            # stays "moved"), and a change that ended it leaves nothing to tell.
            job_id = line_id(new)
            if job_id in self.dependents.owed:
                told = self.dependents.tell(job_id, new)
                if told is not new:
                    self.changed, new = True, told
        return new

    def _change(self, line: bytes) -> Optional[bytes]:
        if self.prefix is not None and not line.startswith(self.prefix):
            return line
        try:
            job = parse_line(line)
            new = self.change(job)
        except CorruptLineError:
            return line
        if self.prefix is not None:
            self.found = True
        if new is None:
            return line
        self.count += 1
        self.changed = True
        if '"then"' in job.options:  # jobs wait for it: tell them if this ends it
            if self.dependents is None:
                from .dependents import Dependents  # here: most processes never need it
                self.dependents = Dependents()
            self.dependents.changed(job, None if new is DROP else new)
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
