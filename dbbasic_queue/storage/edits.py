"""The admin edits that reach into the archive files: purging them, and bringing a retried
job back from one into the queue file. Each is an atomic rewrite under the queue's lock."""

import os
from typing import Callable

from .claim import DROP, EachJob
from ..model.job import Job


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
