"""Jobs waiting for jobs, in the rewrites: telling the waiting jobs, and enqueueing one.

``Dependents`` is what a rewrite owes the jobs waiting for the jobs it ends: every editor
that can end a job (the worker's claim editor, the admin verbs' ``EachJob``) tells it each
job it ends, then hands it every line it passes; the lines of the waiting jobs are changed
in that same rewrite (``model/dependencies.py`` says how), so a job's end and what it does to
the jobs after it are one atomic step, whichever worker ends it and however many end at
once. A job ended that way (cancelled because a job it depends on failed) tells its own.
A waiting job always lies after the jobs it waits for (it is written after them, and a
rewrite keeps the order), so one pass finds it.

``DependentEnqueue`` is the rewrite behind ``enqueue(depends_on=...)``: it adds the new id to
the ``then`` of each job named that has not ended, and writes the new job at the end of the
file, waiting for those (or, if one ended without completing, cancelled), in the same rename.
"""

import logging
from typing import Callable, Dict, List, Optional, Set, Tuple

from ..errors import CorruptLineError
from ..model.dependencies import dependency_error, ended, linked, may_tell, notified, then_of
from ..model.job import ACTIVE, CANCELLED, COMPLETED, Job, line_id, parse_line
from ..model.options import decode_options
from .table import Editor

logger = logging.getLogger("dbbasic_queue")


class Dependents:
    """The ends a rewrite has still to tell: waiting job id -> [(id, how it ended)].
    ``only``, if given, is the editor's set of the lines it sees: each waiting job told of is
    added, so the rewrite shows it its line."""

    def __init__(self, only: Optional[Set[bytes]] = None) -> None:
        self.owed: Dict[bytes, List[Tuple[str, str]]] = {}
        self.only = only
        self.told = 0  # waiting jobs changed
        self.last: Optional[Job] = None  # the job of the last line tell() changed

    def ended(self, job: Job, how: str) -> None:
        """``job`` (its line as the file held it, or its final version) ends ``how``."""
        for waiting in then_of(decode_options(job.options)):
            key = waiting.encode()
            self.owed.setdefault(key, []).append((job.id, how))
            if self.only is not None:
                self.only.add(key)

    def ended_line(self, line: bytes, how: str) -> None:
        """ended() for a line, parsed only if its options may name waiting jobs."""
        if may_tell(line):
            try:
                self.ended(parse_line(line), how)
            except CorruptLineError:
                pass  # the final lines are this process's own; a corrupt one names nobody

    def changed(self, old: Optional[Job], new: Optional[Job]) -> None:
        """An edit changed ``old`` into ``new`` (None: removed): tell its waiting jobs if
        that ends it."""
        how = ended(old, new)
        if how is not None and old is not None:
            self.ended(old if new is None else new.evolve(options=old.options), how)

    def tell(self, job_id: bytes, line: bytes) -> bytes:
        """The line of job ``job_id`` after what is owed to it (the line itself if nothing is,
        or if it is corrupt)."""
        ends = self.owed.pop(job_id, None)
        if ends is None:
            return line
        try:
            job = parse_line(line)
        except CorruptLineError:
            return line
        new = notified(job, ends)
        if new is job:
            return line
        self.told += 1
        self.last = new
        if new.status == CANCELLED:
            logger.info("job %s %s: %s", new.id, new.type, new.error)
            self.ended(new, CANCELLED)
        return new.to_line()

    def unpaid(self) -> List[str]:
        """Waiting jobs told of but not found (deleted by hand): logged, forgotten."""
        missing = [job_id.decode() for job_id in self.owed]
        self.owed.clear()
        return missing


class DependentEnqueue(Editor):
    """The rewrite of ``enqueue(depends_on=ids)`` (see the module docstring). ``job`` is the
    new job as it would be with nothing to wait for; ``archived(id)`` tells how a job not
    in the file ended (from its archive file), None for an id no file has. The new line is
    ``self.line`` once the rewrite is done."""

    def __init__(self, job: Job, depends_on: List[str], allow_failure: bool,
                 archived: Callable[[str], Optional[str]]) -> None:
        self.job, self.archived = job, archived
        self.allow_failure = allow_failure
        self.waiting_on = {job_id.encode(): job_id for job_id in depends_on}
        self.how: Dict[str, Optional[str]] = {}  # id -> how it ended, None if it has not
        self.changed = True  # the new line is written whatever the file holds
        self.line: Optional[bytes] = None

    def __call__(self, line: bytes) -> Optional[bytes]:
        job_id = self.waiting_on.get(line_id(line))
        if job_id is None:
            return line
        try:
            job = parse_line(line)
        except CorruptLineError as error:
            raise ValueError(f"depends_on names job {job_id}, whose line is corrupt "
                             f"({error}); fix or remove it by hand") from None
        if job.status in ACTIVE:
            self.how[job_id] = None
            return job.evolve(options=linked(job.options, then=[self.job.id])).to_line()
        self.how[job_id] = job.status
        return line

    def tail(self) -> bytes:
        for job_id in self.waiting_on.values():
            if job_id not in self.how:
                how = self.archived(job_id)
                if how is None:
                    raise ValueError(f"depends_on names job {job_id}, which is in neither the "
                                     f"queue file nor its archive files; nothing was enqueued")
                self.how[job_id] = how
        job = self.job
        failed = [(job_id, how) for job_id, how in self.how.items()
                  if how is not None and how != COMPLETED]
        waits = [job_id for job_id, how in self.how.items() if how is None]
        if failed and not self.allow_failure:
            job = job.evolve(status=CANCELLED, error=dependency_error(*failed[0]))
        else:
            job = job.evolve(options=linked(job.options, after=waits or None,
                                            allow_failure=self.allow_failure or None))
        self.line = job.to_line()
        return self.line
