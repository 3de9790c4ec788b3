"""The TSV queue: jobs kept in one dbbasic-tsv file, for one server; every job runs at least once.

``enqueue`` appends one line under the table lock, so its cost does not grow with the queue.
The admin verbs (cancel, retry, purge) are atomic rewrites; the worker is in ``worker/run.py``.
"""

import contextlib
import itertools
import threading
import time
from typing import (TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Mapping,
                    Optional, Tuple)

from . import backend, hooks
from .model import transitions
from .backend import (DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS, DEFAULT_PATH,
                      DEFAULT_RETENTION_SECONDS)
from .model.checks import (check_duration, check_path, checked_job_type, checked_purge,
                           checked_run_at, payload_json)
from .storage.archive import ARCHIVE_AFTER_SECONDS, Archive
from .storage.edits import DROP, EachJob, bring_back, purge_archives
from .errors import CorruptLineError, QueueError
from .model.job import (FAILED, PENDING, PROCESSING, RETAINED, as_dict, corrupt_message, job_line,
                        job_with_id_prefix, line_id, new_job_id, parse_line)
from .model.options import (WORKER_KEY, Handlers, decode_options, encode_options, queue_options,
                            register)
from .model.queues import DEFAULT_QUEUE, QueueChoice
from .storage.table import Table
from .storage.unique import UniqueKeys
from .log import logger

if TYPE_CHECKING:
    from .workflows import Batch

# The worker, periodic jobs, pauses, tracebacks, the counts and the links between jobs
# (dependencies.py, dependents.py) are imported where first used:
# a process that only enqueues and looks jobs up (a web app, a hook) never loads them.


class Queue:
    """A job queue kept in one dbbasic-tsv file (``data/queue.tsv`` unless told otherwise).

    ``durable=True`` fsyncs every enqueue, so a queued job survives a power loss, not only a
    crash of the process. Completed and cancelled jobs move to dated archive files beside it
    ``archive_after`` seconds after they finish (0, the default: in the first rewrite after the
    one that records them; None: they stay in the file). ``clock`` (the wall clock), ``monotonic`` (for the
    worker's bounds and result window) and ``random`` (the retry jitter) are there for tests.
    """

    capabilities = frozenset({backend.UNIQUE_KEYS, backend.LEASES, backend.RETRY_KEEPS_ATTEMPTS,
                              backend.WORKER_MAX_ATTEMPTS, backend.LISTING, backend.PURGE,
                              backend.RETRY, backend.FILE, backend.PERIODIC, backend.QUEUES,
                              backend.WORKERS, backend.WORKFLOWS, backend.JOB_CONTROL})

    def __init__(self, path=DEFAULT_PATH, *, durable: bool = False,
                 clock: Callable[[], float] = time.time,
                 random: Callable[[], float] = transitions.uniform,
                 monotonic: Callable[[], float] = time.monotonic,
                 archive_after: Optional[float] = ARCHIVE_AFTER_SECONDS) -> None:
        check_path(path)
        if archive_after is not None:
            check_duration("archive_after", archive_after, zero_allowed=True)
        self.table = Table(path)
        self.path = self.table.path
        self.archive = Archive(self.table)
        self._traceback_files = self._pauses = self._throughput = None
        self.archive_after = archive_after
        self.durable = durable
        self.clock = clock
        self.random = random
        self.monotonic = monotonic
        self.handlers = Handlers()  # filled by @queue.handler(...) and @queue.periodic(...)
        self._unique_keys = UniqueKeys()

    def __repr__(self) -> str:
        return f"Queue({str(self.path)!r})"

    @property
    def traceback_files(self):
        """The traceback files (storage/tracebacks.py), opened at first use."""
        if self._traceback_files is None:
            from .storage.tracebacks import Tracebacks
            self._traceback_files = Tracebacks(self.table)
        return self._traceback_files

    @property
    def counts_files(self):
        """The jobs finished per minute (storage/throughput.py), opened at first use and kept:
        asked again, it reads only what the workers appended since. (A worker run imports
        the module as it starts, in storage/engine.py, before it may drop privileges.)"""
        if self._throughput is None:
            from .storage.throughput import Throughput
            self._throughput = Throughput(self.path)
        return self._throughput

    @property
    def pauses(self):
        """The record of paused queues and types (storage/pauses.py), opened at first use."""
        if self._pauses is None:
            from .storage.pauses import Pauses
            self._pauses = Pauses(self.table)
        return self._pauses

    def describe(self) -> str:
        return str(self.path)

    def enqueue(self, job_type: str, payload: dict, run_at: Optional[float] = None, *,
                unique_key: Optional[str] = None, max_attempts: Optional[int] = None,
                timeout: Optional[float] = None, queue: Optional[str] = None,
                priority: Optional[int] = None, concurrency_key: Optional[str] = None,
                concurrency_limit: Optional[int] = None, rate_limit: Optional[str] = None,
                rate_key: Optional[str] = None, depends_on=None,
                allow_failure: bool = False) -> str:
        """Queue a job for the handler of ``job_type``; return its id.

        ``run_at`` is a Unix timestamp; the job runs at the first worker run after it
        (default: now). While a pending or processing job has the same ``unique_key``, no
        job is added and that job's id is returned. ``max_attempts`` and ``timeout``
        (seconds) override the worker's for this job. ``queue`` names its queue (default: the
        one its handler declares in ``queue.handlers``, else ``default``); ``priority``, from
        -100 to 100 (default 0), runs it before the lower ones due with it (see
        model/queues.py). With a ``concurrency_key`` (``'customer:7'``), at most
        ``concurrency_limit`` jobs of that key run at once on the machine (default: the limit
        its handler declares, else 1; see storage/slots.py). With ``rate_limit='100/m'``, at
        most that many jobs of its ``rate_key`` (default: its type) start in any minute (see
        storage/rates.py). With ``depends_on`` (a job id, a get_job dict, or a list of them),
        the job waits until every one of them has completed; if one fails for good, is
        cancelled or deleted, this job is cancelled, saying why, unless ``allow_failure``
        (then it runs once they have all ended). That enqueue is a rewrite of the file,
        not an append (see storage/dependents.py). Raises TypeError or ValueError, writing
        nothing, on bad arguments (a job depends_on names that no file holds, too).
        """
        prepared = self._prepare(job_type, payload, run_at, unique_key, max_attempts, timeout,
                                 queue, priority, concurrency_key, concurrency_limit, rate_limit,
                                 rate_key)
        if depends_on is not None or allow_failure:
            return self._enqueue_depending(prepared, depends_on, allow_failure, job_type,
                                           payload, queue, priority, max_attempts)
        job_id = self._write(*prepared)
        if hooks.registered and job_id == prepared[0]:  # added, not a unique key's twin
            self._announce(prepared[1], job_type, payload, queue, priority, max_attempts)
        return job_id

    def enqueue_many(self, jobs: Iterable[Tuple[str, dict]], run_at: Optional[float] = None,
                     **options) -> List[str]:
        """Queue many jobs, ``(job_type, payload)`` pairs, in one locked append (one fsync
        when durable); returns their ids, in order. ``run_at`` and the options (those of
        enqueue but ``unique_key``) apply to every job. Every job is checked before anything
        is written: one bad job raises TypeError or ValueError, naming its place, and none
        is written. A process killed during the write may leave its first jobs written and the
        start of one more line (a corrupt line, reported and left alone), the rest not:
        check with get_job before enqueueing them again."""
        if "unique_key" in options:
            raise TypeError("enqueue_many takes no unique_key: enqueue such jobs one by one, "
                            "so each finds its own twin")
        pairs, ids, lines = list(jobs), [], []
        now = self.clock()
        created, due = int(now), checked_run_at(run_at, now)
        kinds: Dict[str, Tuple[str, str]] = {}  # job type -> (checked type, options field)
        for number, job in enumerate(pairs):
            try:
                job_type, payload = job
                kind = kinds.get(job_type) if type(job_type) is str else None
                if kind is None:
                    kind = (checked_job_type(job_type), self._options_text(job_type, **options))
                    kinds[job_type] = kind
                ids.append(new_job_id())
                lines.append(job_line(ids[-1], kind[0], payload_json(payload), PENDING, created,
                                      due, 0, "", "", kind[1]))
            except (TypeError, ValueError) as error:
                raise type(error)(f"job {number} of enqueue_many: {error}") from None
        if lines:
            self.table.append(b"".join(lines), durable=self.durable)
        if hooks.registered:
            for (job_type, payload), line in zip(pairs, lines):
                self._announce(line, job_type, payload, options.get("queue"),
                               options.get("priority"), options.get("max_attempts"))
        return ids

    def _enqueue_depending(self, prepared, depends_on, allow_failure: bool, job_type, payload,
                           queue, priority, max_attempts) -> str:
        if depends_on is None:
            raise TypeError("allow_failure goes with depends_on, such as depends_on=[job_id], "
                            "allow_failure=True")
        if prepared[2] is not None:
            raise TypeError("a job with depends_on takes no unique_key")
        if not isinstance(allow_failure, bool):
            raise TypeError(f"allow_failure must be True or False, not {allow_failure!r}")
        from .model.dependencies import checked_dependencies
        from .storage.dependents import DependentEnqueue
        ids = checked_dependencies(depends_on)
        job = parse_line(prepared[1])
        edit = self.table.rewrite(lambda: DependentEnqueue(job, ids, allow_failure,
                                                           self._how_archived_ended))
        if edit is None:
            raise ValueError(f"depends_on names job {ids[0]}, but {self.path} does not exist; "
                             f"nothing was enqueued")
        if hooks.registered:
            self._announce(edit.line, job_type, payload, queue, priority, max_attempts)
        return job.id

    def _how_archived_ended(self, job_id: str) -> Optional[str]:
        """The status of job ``job_id`` in the archive files, or None if none holds it."""
        found = self.archive.find(job_with_id_prefix(job_id))
        return None if found is None else parse_line(found[2]).status

    def chain(self, *steps, run_at: Optional[float] = None, allow_failure: bool = False,
              **options) -> List[str]:
        """Queue jobs that run one after another, in one append: each step, a
        ``(job_type, payload)`` or ``(job_type, payload, {options})``, waits until the step
        before it has completed; if a step fails for good or is cancelled, the steps after
        it are cancelled (with ``allow_failure``, they run all the same). ``run_at`` and
        ``options`` (those of enqueue but unique_key and depends_on) apply to every step,
        its own options over them. Returns the ids, in order."""
        if not steps:
            raise ValueError("chain takes at least one step, such as ('charge', {'order': 7})")
        if not isinstance(allow_failure, bool):
            raise TypeError(f"allow_failure must be True or False, not {allow_failure!r}")
        from .model.dependencies import checked_step
        ids = [new_job_id() for _ in steps]
        now = self.clock()
        lines = []
        for number, step in enumerate(steps):
            try:
                job_type, payload, own = checked_step(step, "chain")
                links = dict(then=ids[number + 1:number + 2], after=ids[number - 1:number] if number else None,
                             allow_failure=allow_failure and number > 0 or None)
                lines.append(self._new_line(ids[number], job_type, payload, run_at, now,
                                            {**options, **own}, links))
            except (TypeError, ValueError) as error:
                raise type(error)(f"step {number} of chain: {error}") from None
        self.table.append(b"".join(lines), durable=self.durable)
        return ids

    def batch(self, on_complete=None, **options) -> "Batch":
        """A batch of jobs written in one append, with a job to run once all have ended::

            with queue.batch(on_complete=("album_ready", {"album": 7})) as batch:
                for image in images:
                    batch.enqueue("resize", {"image": image})

        ``on_complete`` is ``(job_type, payload)`` or ``(job_type, payload, {options})``: it
        runs once, when every job of the batch has completed, failed for good or been
        cancelled, with ``payload["batch"]`` holding the counts (id, size, completed,
        failed, cancelled). ``batch.id`` is its id; ``dbbasic-queue show`` it for progress.
        ``options`` apply to every job of the batch. Nothing is written if the block
        raises. See workflows.py."""
        from .workflows import Batch
        return Batch(self._write_batch, on_complete, options)

    def _write_batch(self, members, on_complete, callback_id: Optional[str]) -> None:
        """Write a batch's jobs, ``(id, job_type, payload, run_at, options)``, each telling
        ``callback_id``, and its ``on_complete`` job (see Batch)."""
        now = self.clock()
        created, due_now = int(now), checked_run_at(None, now)
        links = {"then": [callback_id] if callback_id is not None else None}
        lines: List[bytes] = []
        made: Dict[str, str] = {}  # a member's options field -> with its then: made once
        kinds: Dict[Any, Tuple[str, str]] = {}  # (type, options) -> checked type, field
        for number, (job_id, job_type, payload, run_at, options) in enumerate(members):
            try:
                try:
                    key = (job_type, tuple(options.items()))
                    kind = kinds.get(key)
                except TypeError:  # an unhashable value: checked below, and refused there
                    key, kind = None, None
                if kind is None:
                    kind = (checked_job_type(job_type),
                            self._linked_options(job_type, options, links, made))
                    if key is not None:
                        kinds[key] = kind
                lines.append(job_line(job_id, kind[0], payload_json(payload), PENDING, created,
                                      due_now if run_at is None else checked_run_at(run_at, now),
                                      0, "", "", kind[1]))
            except (TypeError, ValueError) as error:
                raise type(error)(f"job {number} of the batch: {error}") from None
        if callback_id is not None:
            from .model.dependencies import checked_step
            job_type, payload, own = checked_step(on_complete, "on_complete")
            counts = {"size": len(members), "completed": 0, "failed": 0, "cancelled": 0}
            if members:
                lines.append(self._new_line(callback_id, job_type, payload, None, now, own,
                                            {"batch": counts}))
            else:  # nothing to wait for: due now, with the counts
                lines.append(self._new_line(callback_id, job_type, {
                    **payload, "batch": {"id": callback_id, **counts}}, None, now, own, {}))
        if lines:
            self.table.append(b"".join(lines), durable=self.durable)

    def _new_line(self, job_id: str, job_type, payload, run_at, now: float, options,
                  links) -> bytes:
        """A new pending job's line, its options checked, with ``links`` (see
        model/dependencies.py)."""
        return job_line(job_id, checked_job_type(job_type), payload_json(payload), PENDING,
                        int(now), checked_run_at(run_at, now), 0, "", "",
                        self._linked_options(job_type, options, links))

    def _linked_options(self, job_type, options, links,
                        made: Optional[Dict[str, str]] = None) -> str:
        """A new job's options field (checked) with ``links``; ``made`` keeps the fields
        made with the same links, by the field without them."""
        if "unique_key" in options or "depends_on" in options:
            raise TypeError("jobs of a chain or batch take no unique_key or depends_on")
        text = self._options_text(job_type, **options)
        if not any(links.values()):
            return text
        known = None if made is None else made.get(text)
        if known is None:
            from .model.dependencies import linked
            known = linked(text, **links)
            if made is not None:
                made[text] = known
        return known

    def enqueue_after(self, register_callback: Callable[[Callable[[], Any]], Any],
                      job_type: str, payload: dict, run_at: Optional[float] = None,
                      **options) -> str:
        """Enqueue once a transaction commits: checks everything now (raising as enqueue
        does), hands ``register_callback`` a function that writes the job, and returns the
        id the job will have. ``register_callback`` is, say, Django's
        ``transaction.on_commit``; if it never calls the function (a rollback), there is no
        job. With a ``unique_key``, the id kept may be the twin's, found at commit: the
        function returns the id kept."""
        prepared = self._prepare(job_type, payload, run_at, **options)

        def write() -> str:
            job_id = self._write(*prepared)
            if hooks.registered and job_id == prepared[0]:
                self._announce(prepared[1], job_type, payload, options.get("queue"),
                               options.get("priority"), options.get("max_attempts"))
            return job_id
        register_callback(write)
        return prepared[0]

    def _prepare(self, job_type, payload, run_at=None, unique_key=None, max_attempts=None,
                 timeout=None, queue=None, priority=None, concurrency_key=None,
                 concurrency_limit=None, rate_limit=None, rate_key=None):
        now = self.clock()
        job_id = new_job_id()
        options = self._options_text(job_type, unique_key, max_attempts, timeout, queue,
                                     priority, concurrency_key, concurrency_limit, rate_limit,
                                     rate_key)
        line = job_line(job_id, checked_job_type(job_type), payload_json(payload), PENDING,
                        int(now), checked_run_at(run_at, now), 0, "", "", options)
        return job_id, line, unique_key

    def _options_text(self, job_type, unique_key=None, max_attempts=None, timeout=None,
                      queue=None, priority=None, concurrency_key=None, concurrency_limit=None,
                      rate_limit=None, rate_key=None) -> str:
        """A new job's options field (checked): its queue is its handler's unless given."""
        if queue is None and self.handlers.queues:
            queue = self.handlers.queues.get(job_type)
        if (unique_key is None and max_attempts is None and timeout is None
                and concurrency_key is None and concurrency_limit is None and rate_limit is None
                and rate_key is None):
            return "" if queue is None and priority is None else queue_options(queue, priority)
        return encode_options(unique_key, max_attempts, timeout, queue, priority,
                              concurrency_key, concurrency_limit, rate_limit, rate_key)

    def _write(self, job_id: str, line: bytes, unique_key: Optional[str]) -> str:
        if unique_key is None:
            self.table.append(line, durable=self.durable)
            return job_id
        twin = self.table.append(line, durable=self.durable,
                                 unless=lambda fd: self._unique_keys.job_with(fd, unique_key))
        return job_id if twin is None else twin

    def _announce(self, line: bytes, job_type, payload, queue, priority, max_attempts):
        """Tell the hooks of the job just written as ``line``."""
        if queue is None:
            queue = self.handlers.queues.get(job_type, DEFAULT_QUEUE)
        fields = line.split(b"\t", 6)  # no field before options holds a tab (see job_line)
        hooks.call(hooks.JobEvent("on_enqueue", line_id(line).decode(), job_type, queue,
                                  priority or 0, 0, max_attempts or 0, payload,
                                  run_at=int(fields[5])))

    def handler(self, job_type: str, *, queue: Optional[str] = None,
                limit: Optional[int] = None, rate_limit: Optional[str] = None) -> Callable:
        """A decorator: ``@queue.handler("send_email")`` adds the function to
        ``queue.handlers``, for ``process_jobs(queue.handlers)``; with ``queue="emails"``,
        jobs of the type enqueued through this Queue go to that queue unless told otherwise;
        with ``limit=2``, at most two of its jobs with one ``concurrency_key`` run at once;
        with ``rate_limit='100/m'``, at most 100 of its jobs start in any minute."""
        return register(self.handlers, job_type, queue, limit, rate_limit)

    def periodic(self, cron: Optional[str] = None, *, every=None, timezone: str = "UTC",
                 catch_up: str = "latest", job_type: Optional[str] = None) -> Callable:
        """A decorator: ``@queue.periodic("0 3 * * *", timezone="Europe/Berlin")`` or
        ``@queue.periodic(every=timedelta(minutes=10))`` registers the function as the handler
        of ``job_type`` (default: its ``__qualname__``) in ``queue.handlers``, with its
        schedule: any worker given ``queue.handlers`` enqueues one job per slot, exactly once
        however many workers run. ``catch_up`` says what happens to slots missed while no
        worker ran: "latest" (one job, for the latest), "all" (one each, at most
        MAX_CATCH_UP_SLOTS), "none" (skipped). The payload holds the slot."""
        from .periodic.schedules import declare
        return declare(self.handlers, cron, every=every, timezone=timezone, catch_up=catch_up,
                       job_type=job_type)

    def get_job(self, job_id: str) -> Optional[Dict[str, Any]]:
        """The job as a dict (see the README), or None if there is no such job."""
        found = self._find(job_id)
        if found is None:
            return None
        job, number, path = found
        try:
            return as_dict(job)
        except ValueError as error:
            number = number or self.archive.line_number(path, job.to_line())
            raise CorruptLineError(corrupt_message(path, number, error)) from None

    def job_options(self, job_id: str) -> Optional[Dict[str, Any]]:
        """The options the job was enqueued with (unique_key, max_attempts, timeout; those
        not given are absent), or None if there is no such job."""
        found = self._find(job_id)
        if found is None:
            return None
        job, number, path = found
        try:
            options = decode_options(job.options)
        except ValueError as error:
            number = number or self.archive.line_number(path, job.to_line())
            raise CorruptLineError(corrupt_message(path, number, error)) from None
        return {key: value for key, value in options.items() if key != WORKER_KEY}

    def job_info(self, job_id: str) -> Optional[Dict[str, Any]]:
        """Everything known of a job, as a dict, or None if there is no such job: the
        get_job keys, and ``options`` (as job_options gives them), ``waiting`` (what a
        pending job waits for, in words, or None: see docs/workflows.md), ``progress``
        (a running job's latest report: done, from 0 to 1, note and at; or None) and
        ``stop_requested`` (who asked a running job to stop, or None)."""
        found = self._find(job_id)
        if found is None:
            return None
        from .model.dependencies import waiting_for
        job, number, path = found
        try:
            info, options = as_dict(job), decode_options(job.options)
        except ValueError as error:
            number = number or self.archive.line_number(path, job.to_line())
            raise CorruptLineError(corrupt_message(path, number, error)) from None
        token = options.pop(WORKER_KEY, None)
        info.update(options=options, progress=None, stop_requested=None,
                    waiting=waiting_for(options) if job.status == PENDING else None)
        if job.status == PROCESSING and isinstance(token, str):
            from .storage.notes import RunNotes
            notes = RunNotes(self.path)
            progress = notes.progress_of(token, job.id)
            if progress is not None:
                info["progress"] = progress._asdict()
            info["stop_requested"] = notes.stop_request_for(token, job.id, job.attempts)
        return info

    def stop(self, job_id: str, by: Optional[str] = None) -> bool:
        """Ask the worker running a job to stop it: its handler sees
        ``current_job().stop_requested`` within a second, and one still running the
        worker's ``stop_grace`` seconds later (10 by default) is interrupted; the job ends
        ``cancelled``, its error ``Stopped by <by>`` (default: this process's user). True if
        the job is processing and the request is recorded. A pending job is cancel_job's."""
        from .storage.notes import RunNotes, StopRequest, checked_note
        from .storage.liveness import is_token
        by = checked_note(by if by is not None else _user(), "by") or "someone"
        found = self._find(job_id)
        if found is None or found[0].status != PROCESSING:
            return False
        token = decode_options(found[0].options).get(WORKER_KEY)
        if not is_token(token):
            return False  # a worker of another kind holds it (or a line edited by hand)
        from .storage.liveness import WorkerLocks
        if WorkerLocks(self.path).owner(token).alive is False:
            return False  # its worker died: the job is taken again as any dead worker's
        RunNotes(self.path).ask_stop(token, StopRequest(job_id, found[0].attempts, by,
                                                        self.clock()))
        return True

    def tracebacks(self, job_id: str) -> List[Dict[str, Any]]:
        """The tracebacks of a job's failed attempts kept in the last retention period,
        oldest first: dicts of attempt, failed_at, error, exception (its class path) and
        traceback (text)."""
        return self.traceback_files.of(job_id)

    def cancel_job(self, job_id: str) -> bool:
        """Cancel a pending job. True if it was pending and is now cancelled."""
        found = self._find(job_id)
        if found is None or transitions.cancel(found[0]) is None:
            return False
        return self.update_each(transitions.cancel, only_id=job_id) == 1

    def delete(self, job_id: str) -> bool:
        """Remove a job for good, from the queue file or its archive file; True if it was
        there and is gone. A processing job is refused (False): its worker holds it (wait
        for its result, or put it back with run_now(force=True) first). The tracebacks of
        its failed attempts stay until retention deletes their day's file."""
        found = self._find(job_id)
        if found is None or found[0].status == PROCESSING:
            return False
        if found[2] == self.path and self.update_each(
                lambda job: None if job.status == PROCESSING else DROP, only_id=job_id) != 1:
            return False
        archived = self.archive.find(job_with_id_prefix(job_id))  # a move's twin, too
        if archived is not None:
            edit = self.archive.table_of(archived[0]).rewrite(
                lambda: EachJob(lambda job: DROP, only_id=job_id))
            if edit is not None and edit.count:
                self.archive.remove_if_jobless(archived[0])
        return True

    def retry_job(self, job_id: str) -> bool:
        """Put a failed or cancelled job back to pending, due now, with its attempts reset to
        0 (it gets ``max_attempts`` new ones; its last error stays until it runs). True if
        it was failed or cancelled."""
        found = self._find(job_id)
        now = self.clock()
        if found is None or transitions.retry(found[0], now) is None:
            return False
        if found[2] != self.path:
            return bring_back(self, found[0], found[2], transitions.retry(found[0], now))
        return self.update_each(lambda job: transitions.retry(job, now), only_id=job_id) == 1

    def run_now(self, job_id: str, force: bool = False) -> bool:
        """Make a pending job (waiting for its run_at or a retry) due now, keeping its
        attempts. A ``processing`` job is put back only with ``force``: if its worker is
        alive it may then run twice at once. True if the job changed."""
        found = self._find(job_id)
        now = self.clock()
        if found is None or transitions.run_now(found[0], now, force) is None:
            return False
        return self.update_each(lambda job: transitions.run_now(job, now, force),
                                only_id=job_id) == 1

    def run_now_all(self, job_type: Optional[str] = None) -> int:
        """run_now for every pending job not due yet (of ``job_type``, if given), in one
        rewrite; returns how many. Processing jobs are left to their leases."""
        now = self.clock()
        return self.update_each(lambda job: transitions.run_now(job, now) if (
            job.status == PENDING and job.run_at > now and job_type in (None, job.type)) else None)

    def retry_failed(self, job_type: Optional[str] = None) -> int:
        """retry_job for every failed job (of ``job_type``, if given); returns how many."""
        if job_type is not None and not isinstance(job_type, str):
            raise TypeError(f"job_type must be a str such as 'send_email', or None for every "
                            f"type, not {type(job_type).__name__}")
        now = self.clock()
        return self.update_each(lambda job: transitions.retry(job, now) if job.status == FAILED
                                 and job_type in (None, job.type) else None)

    def purge(self, older_than: float, statuses=RETAINED) -> int:
        """Remove finished jobs (of ``statuses``) whose last activity, the later of
        created_at and run_at, is more than ``older_than`` seconds ago; returns how many."""
        statuses = checked_purge(older_than, statuses)
        before = self.clock() - older_than

        def change(job):
            return DROP if transitions.is_purged(job, statuses, before) else None
        return self.update_each(change) + purge_archives(self, change)

    def pause(self, queue: Optional[str] = None, *, job_type: Optional[str] = None) -> bool:
        """Stop every worker, from its next claim on, starting jobs of ``queue`` (or of
        ``job_type``); jobs running finish, nothing else changes. Kept in
        ``<queue>.paused.tsv`` until ``resume``. True if it was not paused already."""
        return self.pauses.mark(*_pause_target(queue, job_type), True, self.clock())

    def resume(self, queue: Optional[str] = None, *, job_type: Optional[str] = None) -> bool:
        """Undo ``pause`` for ``queue`` (or ``job_type``); True if it was paused."""
        return self.pauses.mark(*_pause_target(queue, job_type), False, self.clock())

    def paused(self) -> List[Dict[str, Any]]:
        """The pauses in force: dicts of kind ("queue" or "type"), name and paused_at."""
        return self.pauses.listing()

    def update_each(self, change: Callable, only_id: Optional[str] = None) -> int:
        """Apply ``change(job) -> new Job | edits.DROP | None`` to every readable job (or
        only to ``only_id``) in one atomic rewrite; returns how many changed. The verbs
        above are built on it; a migration uses it to mark the jobs it moved."""
        edit = self.table.rewrite(lambda: EachJob(change, only_id))
        return 0 if edit is None else edit.count

    def jobs(self) -> Iterator[Dict[str, Any]]:
        """Every job, as get_job dicts: the archive files' (oldest first), then the queue
        file's, each in file order; corrupt lines are logged and skipped. A job moved back
        from an archive file (retried) is listed once, as it is now."""
        live = [(self.path, number, line) for number, line in self.table.lines()]
        current = {line_id(line) for _, _, line in live}
        archived = ((path, number, line) for path, number, line in self.archive.lines()
                    if line_id(line) not in current)
        for path, number, line in itertools.chain(archived, live):
            try:
                yield as_dict(parse_line(line))
            except (CorruptLineError, ValueError) as error:
                logger().warning(corrupt_message(path, number, error))

    def stats(self) -> Dict[str, Any]:
        """Counts by status and type, the queue's latency and the next scheduled run, over
        the queue file and its archive files."""
        from .periodic.firing import listing
        from .storage.stats import queue_stats, workers_summary
        stats = queue_stats(self)
        stats["workers"] = workers_summary(self.workers(), self.clock())
        stats["throughput"] = self.counts_files.totals(self.clock())
        try:  # the schedules as the workers last recorded them
            stats["schedules"] = listing(self)
        except QueueError as error:  # the state file cannot be read: the counts still can
            logger().warning("%s", error)
            stats["schedules"] = None
        return stats

    def throughput(self, step: int = 60, steps: int = 60) -> Dict[str, Any]:
        """How many jobs the workers completed, failed for good and retried in each of the
        last ``steps`` spans of ``step`` seconds (by default each minute of the last hour;
        ``step=3600, steps=168``: each hour of a week), the current span last:
        {"starts", "step", "completed", "failed", "retried"}. From the counts the workers
        keep beside the queue (storage/throughput.py), never a scan of the jobs; this queue
        object keeps what it read, so asking again reads only what was written since."""
        if not (type(step) is int and step > 0 and step % 60 == 0):
            raise ValueError(f"step must be a whole number of minutes in seconds (60, 3600), "
                             f"not {step!r}")
        if not (type(steps) is int and 1 <= steps <= 10_000):
            raise ValueError(f"steps must be a whole number from 1 to 10000, not {steps!r}")
        return self.counts_files.series(self.clock(), step, steps)

    def workers(self) -> List[Dict[str, Any]]:
        """The workers seen working this queue (storage/workers.py), most recently seen
        first; each a dict of its registry line and its state: alive, late or gone."""
        from .storage.workers import Workers
        return Workers(self.path).listing(self.clock())

    def _find(self, job_id):
        prefix = job_with_id_prefix(job_id)
        if prefix is None:
            return None
        found = next(((self.path, number, line) for number, line in self.table.lines()
                      if line.startswith(prefix)), None) or self.archive.find(prefix)
        if found is None:
            return None
        path, number, line = found
        try:
            return parse_line(line), number, path
        except CorruptLineError as error:
            number = number or self.archive.line_number(path, line)
            raise CorruptLineError(corrupt_message(path, number, error)) from None

    def check_worker(self, handlers: Mapping[str, Callable[[dict], Any]],
                     max_attempts: int = DEFAULT_MAX_ATTEMPTS, **options) -> None:
        """Raise as process_jobs and work would for these settings, touching nothing."""
        bounds = {name: options.pop(name) for name in ("max_jobs", "max_seconds") if name in options}
        defaults = dict(lease_seconds=DEFAULT_LEASE_SECONDS,
                        retention_seconds=DEFAULT_RETENTION_SECONDS, timeout=None, concurrency=1,
                        queues=None, stop_grace=backend.DEFAULT_STOP_GRACE)
        unknown = set(options) - set(defaults)
        if unknown:
            raise TypeError(f"unknown worker options: {', '.join(sorted(unknown))}")
        chosen = {**defaults, **options}
        from .worker.settings import Bounds, WorkerOptions
        WorkerOptions(handlers, max_attempts, chosen["lease_seconds"], chosen["retention_seconds"],
                      chosen["timeout"], chosen["concurrency"], chosen["queues"],
                      chosen["stop_grace"])
        Bounds(bounds.get("max_jobs"), bounds.get("max_seconds"), self.monotonic)

    def process_jobs(self, handlers: Mapping[str, Callable[[dict], Any]],
                     max_attempts: int = DEFAULT_MAX_ATTEMPTS, *,
                     lease_seconds: float = DEFAULT_LEASE_SECONDS,
                     max_jobs: Optional[int] = None, max_seconds: Optional[float] = None,
                     retention_seconds: Optional[float] = DEFAULT_RETENTION_SECONDS,
                     timeout: Optional[float] = None, concurrency: int = 1,
                     queues: QueueChoice = None,
                     stop_grace: float = backend.DEFAULT_STOP_GRACE) -> int:
        """Run the due jobs with ``handlers`` (job type -> callable taking the payload dict).

        It takes only jobs of the types it has handlers for (others stay pending for a
        worker that has, their error saying so), in ``queues``: None (every queue), a list
        (served in that strict order), or weights ({"emails": 3, "default": 1}); paused
        queues and types are skipped. Among the due jobs it takes, higher priority first.

        A failed job is retried on the ``retry_delay`` schedule until it has had
        ``max_attempts`` attempts, then marked ``failed``. The run stops when no job is due,
        after ``max_jobs`` jobs, or once ``max_seconds`` have passed (the job in hand is
        finished). Completed and cancelled jobs older than ``retention_seconds`` (None:
        keep them) are dropped from the lines the run rewrites anyway. A handler running
        longer than ``timeout`` seconds (or its job's own timeout) is stopped and counts as a
        failed attempt. ``concurrency`` runs up to that many handlers at once, in threads
        (handlers must then be thread-safe). A handler asked to stop (``stop``) and still
        running ``stop_grace`` seconds later is interrupted. Returns how many jobs it ran.

        Called from the main thread of a process whose SIGTERM has its default action, a
        SIGTERM lets the job in hand finish and puts the jobs claimed but not started back
        before the process ends by it (see loop.stop_on_sigterm).
        """
        from .worker.loop import stop_on_sigterm
        from .worker.run import WorkerRun
        from .worker.settings import Bounds, WorkerOptions
        options = WorkerOptions(handlers, max_attempts, lease_seconds, retention_seconds, timeout,
                                concurrency, queues, stop_grace)
        bounds = Bounds(max_jobs, max_seconds, self.monotonic)
        with stop_on_sigterm() as stop:
            return WorkerRun(self, options, bounds, stop).run()

    def work(self, handlers: Mapping[str, Callable[[dict], Any]],
             max_attempts: int = DEFAULT_MAX_ATTEMPTS, *,
             lease_seconds: float = DEFAULT_LEASE_SECONDS,
             max_jobs: Optional[int] = None, max_seconds: Optional[float] = None,
             retention_seconds: Optional[float] = DEFAULT_RETENTION_SECONDS,
             timeout: Optional[float] = None, concurrency: int = 1,
             stop: Optional[threading.Event] = None, handle_signals: bool = True,
             queues: QueueChoice = None,
             stop_grace: float = backend.DEFAULT_STOP_GRACE) -> int:
        """Run jobs as they come, until stopped; returns how many ran. It takes what
        process_jobs takes (``queues`` and ``stop_grace`` included).

        Between runs it watches the file's size and mtime (a cheap stat every 50 ms) and
        wakes for the next scheduled job, so a new job starts within about 50 ms and an idle
        worker costs next to nothing. It stops after ``max_jobs`` or ``max_seconds``, when
        ``stop`` is set, or (with ``handle_signals``, from the main thread) at SIGTERM or
        SIGINT: the job in hand finishes and is recorded first. A second signal exits at
        once, leaving that job to its lease.
        """
        from .worker.loop import stop_on_signals, work_loop
        from .worker.settings import Bounds, WorkerOptions
        options = WorkerOptions(handlers, max_attempts, lease_seconds, retention_seconds, timeout,
                                concurrency, queues, stop_grace)
        bounds = Bounds(max_jobs, max_seconds, self.monotonic)
        stop = stop or threading.Event()
        with stop_on_signals(stop) if handle_signals else contextlib.nullcontext():
            return work_loop(self, options, bounds, stop)


def _user() -> str:
    """This process's user name, for a stop request's ``by``."""
    import getpass
    try:
        return getpass.getuser()
    except Exception:  # no name for this uid (a container): its number
        import os
        return f"uid {os.getuid()}"


def _pause_target(queue: Optional[str], job_type: Optional[str]):
    if (queue is None) == (job_type is None):
        raise TypeError("pause and resume take a queue, as in pause('emails'), or "
                        "job_type='charge_card': one of the two")
    return ("queue", queue) if job_type is None else ("type", job_type)
