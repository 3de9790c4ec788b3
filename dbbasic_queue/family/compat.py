"""What the other dbbasic packages call: ``push`` and ``pop`` (dbbasic-web, through
``from dbbasic.queue import Queue``) and the job rows behind ``dbbasic_queue._read_tsv``
(dbbasic-email's ``email:queue``).

``push`` and ``pop`` hand a job over **at most once**: ``pop`` marks the job it returns
completed in the file before returning it, so a process that dies while working on it loses
that job. ``enqueue`` with ``process_jobs`` is the at-least-once way (a job is completed only
once its handler has returned, and a killed worker's job runs again).
"""

import json
import logging
import time
from typing import Any, Dict, List, Optional, Tuple

from ..model import transitions
from ..backend import DEFAULT_RETENTION_SECONDS, FILE
from ..errors import CorruptLineError, UnsupportedError
from ..model.job import (PENDING, PENDING_WORD, Job, as_dict, corrupt_message, line_id,
                         parse_line, peek_status_and_run_at)
from ..queue import Queue
from ..storage.archive import RetiringEditor
from ..storage.engine import STALE_TEMPORARY_SECONDS
from .tagged import pack, unpack

logger = logging.getLogger("dbbasic_queue")

PUSH_TYPE = "dbbasic.queue.push"  # the job type of pushed jobs, as `dbbasic-queue list` shows it
_PUSH_TYPE_FIELD = PUSH_TYPE.encode()


class PushPopQueue(Queue):
    """A Queue with dbbasic-web's two verbs, ``push(dict) -> id`` and ``pop() -> dict | None``.

    A pushed job is an ordinary job of type ``dbbasic.queue.push`` whose payload is the dict,
    with ``bytes`` values written as ``{"__bytes__": "<base64>"}`` (see ``tagged.py``):
    ``get_job``, ``list`` and ``cat`` show it like any other. ``pop`` takes pushed jobs
    only; jobs queued with ``enqueue`` wait for ``process_jobs``. A worker on the same file
    would take pushed jobs too: give it a handler for ``dbbasic.queue.push`` (it receives the
    stored payload, bytes still tagged; ``tagged.unpack`` restores them) or run none there.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._reported: set = set()  # corrupt lines already logged by this queue

    def push(self, payload: dict) -> str:
        """Queue ``payload`` for ``pop``; return the job's id. Values must be dicts with str
        keys, lists, str, int, float, bool, None or bytes; anything else (a tuple, a set, a
        datetime) raises TypeError, naming where it is, and nothing is written."""
        if not isinstance(payload, dict):
            raise TypeError(f"push takes a dict, not {type(payload).__name__}")
        try:
            packed = pack(payload)
        except RecursionError:
            raise TypeError("payload is nested too deeply, or holds itself; push plain "
                            "data") from None
        return self.enqueue(PUSH_TYPE, packed)

    def pop(self, *, retention_seconds: Optional[float] = DEFAULT_RETENTION_SECONDS
            ) -> Optional[Dict[str, Any]]:
        """The payload of the oldest due pushed job (the first in the file), or None.

        In one atomic rewrite under the queue's lock, the job is marked ``completed``
        (attempts 1, run_at the time of the pop) before its payload is returned: no other
        ``pop`` and no ``process_jobs`` ever hands it over again, and if the caller dies
        before finishing its work the job is not retried. For at-least-once, use
        ``enqueue`` and ``process_jobs``. The rewrite moves old finished jobs to the archive
        files as a worker's does; ``retention_seconds`` is process_jobs's (archive files
        older than that are deleted). A corrupt pushed line is logged and left alone.
        """
        while True:
            now = self.clock()
            if not self._has_due_push(now):
                return None
            archive_before = None if self.archive_after is None else now - self.archive_after
            drop_before = None if retention_seconds is None else now - retention_seconds
            spool = None if archive_before is None else self.archive.spool()
            edit = self.table.rewrite(lambda: PopEditor(now, archive_before, drop_before, spool))
            if edit is not None and edit.taken is not None:
                self._tidy(drop_before)
                return edit.taken
            # Another pop (or a worker) took it between the look and the rewrite: look again.

    def _has_due_push(self, now: float) -> bool:
        """Whether a pushed job is due: a look without the lock, so an empty queue costs a read."""
        for number, line in self.table.lines():
            try:
                if poppable(line, now) is not None:
                    return True
            except CorruptLineError as error:
                if line not in self._reported and len(self._reported) < 1000:
                    self._reported.add(line)
                    logger.warning(corrupt_message(self.path, number, error))
        return False

    def _tidy(self, drop_before: Optional[float]) -> None:
        """What a worker run does on the side, so a queue only ever popped stays small."""
        if drop_before is not None:
            self.archive.remove_expired(drop_before)
        self.table.remove_stale_temporary_files(older_than=STALE_TEMPORARY_SECONDS,
                                                now=time.time())


def poppable(line: bytes, now: float) -> Optional[Tuple[Job, Dict[str, Any]]]:
    """(job, payload) if ``line`` is a due pending pushed job, None if it is another job.
    Raises CorruptLineError for a pushed job that cannot be read back."""
    peek = peek_status_and_run_at(line)
    if peek is not None and (peek[0] != PENDING_WORD or peek[1] > now):
        return None
    if peek is not None and line.split(b"\t", 2)[1] != _PUSH_TYPE_FIELD:
        return None
    job = parse_line(line)  # a line only a full parse can judge, or a due pushed job
    if job.type != PUSH_TYPE or not transitions.is_due(job, now) or job.status != PENDING:
        return None
    try:
        payload = unpack(json.loads(job.payload))
    except (ValueError, RecursionError) as error:
        raise CorruptLineError(f"its pushed payload cannot be read back ({error})") from None
    if not isinstance(payload, dict):
        raise CorruptLineError("its payload is not a JSON object")
    return job, payload


class PopEditor(RetiringEditor):
    """The rewrite of one ``pop``: marks the first due pushed job completed (``taken`` is
    then its payload) and, in the lines before it, moves finished jobs past the archive age
    to the archive files (``spool``) or drops those past retention, as the worker does."""

    def __init__(self, now: float, archive_before: Optional[float],
                 drop_before: Optional[float], spool) -> None:
        self.now, self.archive_before, self.drop_before = now, archive_before, drop_before
        self.spool = spool
        self.taken: Optional[Dict[str, Any]] = None

    def __call__(self, line: bytes) -> Optional[bytes]:
        try:
            found = poppable(line, self.now)
        except CorruptLineError:
            return line  # reported by the look before the rewrite
        if found is not None:
            job, self.taken = found
            self.changed = self.done = True
            return transitions.complete(job, self.now, "").to_line()
        peek = peek_status_and_run_at(line)
        finished = None if peek is None else transitions.finished_at(*peek)
        return line if finished is None else self.retire(line, finished)


def job_rows(path=None) -> List[List[str]]:
    """Every job as a row of strings, in the published columns (id, type, payload, status,
    created_at, run_at, attempts, error, result): the archive files' jobs (oldest file
    first), then the queue file's, each in file order, so completed jobs moved to an archive
    file are still counted. A job in both (retried from an archive file) is listed once, as
    it is now; corrupt lines are logged and skipped, as ``Queue.jobs`` does. ``path`` is the
    queue file (default: the module functions' queue, ``$DBBASIC_QUEUE_FILE`` or
    ``data/queue.tsv``). This is ``dbbasic_queue._read_tsv``, the name dbbasic-email calls."""
    if path is None:
        from .. import default_queue  # the package's choice, made at each call
        queue = default_queue()
        if FILE not in queue.capabilities:
            raise UnsupportedError(f"the job rows are read from a TSV file; the queue is on "
                                   f"{queue.describe()}: use its own tools")
    else:
        queue = Queue(path)
    live = [(queue.path, number, line) for number, line in queue.table.lines()]
    current = {line_id(line) for _, _, line in live}
    archived = [(where, number, line) for where, number, line in queue.archive.lines()
                if line_id(line) not in current]
    rows = []
    for where, number, line in archived + live:
        try:
            job = parse_line(line)
            as_dict(job)  # the same judgement as Queue.jobs: its JSON must read
        except (CorruptLineError, ValueError) as error:
            logger.warning(corrupt_message(where, number, error))
            continue
        rows.append([job.id, job.type, job.payload, job.status, str(job.created_at),
                     str(job.run_at), str(job.attempts), job.error, job.result])
    return rows
