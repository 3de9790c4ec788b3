"""A background job queue in one TSV file, for one server: every job runs at least once.

``enqueue`` appends one line under the table lock, so its cost does not grow with the queue.
``process_jobs`` claims due jobs in batches (one atomic rewrite marks them ``processing`` with a
lease), runs them, and records their results in batches at most about a second old; while it
runs it renews its leases, so no other worker takes its jobs, and a job whose worker died is
taken again once its lease has run out.
"""

import contextlib
import json
import logging
import math
import os
import random
import secrets
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional

from .errors import CorruptLineError
from .options import (JobTimeout, Retry, UniqueKeys, check_number, decode_options,
                      encode_options, register, time_limit)
from .table import STATUSES, Editor, Job, Table, job_line, one_line, parse_line

logger = logging.getLogger("dbbasic_queue")

DEFAULT_PATH = "data/queue.tsv"
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_LEASE_SECONDS = 300
DEFAULT_RETENTION_SECONDS = 7 * 86400  # completed and cancelled jobs older than this go
RESULT_WINDOW_SECONDS = 1.0  # a finished job's result reaches the file within about this long
FINISHED = ("completed", "failed", "cancelled")
_IDLE_CHECK_SECONDS = 0.05  # how often an idle loop worker looks at the file's size and mtime
_IDLE_RESCAN_SECONDS = 60.0  # and reads it anyway, at least this often
_KEEPER_TICK_SECONDS = 0.2
_BATCH_SECONDS = 0.5  # aim for batches of about this much work
_FIRST_BATCH, _MAX_BATCH = 8, 6000  # a held job costs about 2 KB of peak memory


def retry_delay(attempts: int, *, base: float = 60, factor: float = 2, cap: float = 3600,
                jitter: float = 0.25, random: Callable[[], float] = random.random) -> float:
    """Seconds to wait before the next try of a job that has failed ``attempts`` times.

    1.0.0's schedule, ``base * factor ** attempts`` (2 min, 4 min, 8 min, ...), capped at
    ``cap`` seconds, then shortened by a random fraction of at most ``jitter``, so jobs that
    failed together do not all come back in the same second.
    """
    return min(cap, base * factor ** attempts) * (1 - jitter * random())


class Queue:
    """A job queue kept in one dbbasic-tsv file (``data/queue.tsv`` unless told otherwise).

    ``durable=True`` fsyncs every enqueue, so a queued job survives a power loss, not only a
    crash of the process. ``clock`` and ``random`` are there for tests.
    """

    def __init__(self, path=DEFAULT_PATH, *, durable: bool = False,
                 clock: Callable[[], float] = time.time,
                 random: Callable[[], float] = random.random) -> None:
        self.table = Table(path)
        self.path = self.table.path
        self.durable = durable
        self.clock = clock
        self.random = random
        self.handlers: Dict[str, Callable[[dict], Any]] = {}  # filled by @queue.handler(...)
        self._unique_keys = UniqueKeys()

    def __repr__(self) -> str:
        return f"Queue({str(self.path)!r})"

    def enqueue(self, job_type: str, payload: dict, run_at: Optional[float] = None, *,
                unique_key: Optional[str] = None, max_attempts: Optional[int] = None,
                timeout: Optional[float] = None) -> str:
        """Queue a job for the handler of ``job_type``; return its id.

        ``run_at`` is a Unix timestamp; the job runs at the first worker run after it
        (default: now). While a pending or processing job has the same ``unique_key``, no
        job is added and that job's id is returned. ``max_attempts`` and ``timeout``
        (seconds) override the worker's for this job. Raises TypeError or ValueError,
        writing nothing, on bad arguments.
        """
        return self._write(*self._prepare(job_type, payload, run_at, unique_key, max_attempts,
                                          timeout))

    def enqueue_after(self, register_callback: Callable[[Callable[[], Any]], Any],
                      job_type: str, payload: dict, run_at: Optional[float] = None,
                      **options) -> str:
        """Enqueue once a transaction commits: checks everything now (raising as enqueue
        does), hands ``register_callback`` a function that writes the job, and returns the
        id the job will have. ``register_callback`` is, say, Django's
        ``transaction.on_commit``; if it never calls the function (a rollback), there is no
        job. With a ``unique_key``, the id kept may be the twin's, found at commit."""
        prepared = self._prepare(job_type, payload, run_at, **options)
        register_callback(lambda: self._write(*prepared))
        return prepared[0]

    def _prepare(self, job_type, payload, run_at=None, unique_key=None, max_attempts=None,
                 timeout=None):
        now = self.clock()
        job_id = secrets.token_hex(8)
        no_options = unique_key is None and max_attempts is None and timeout is None
        line = job_line(job_id, _checked_job_type(job_type), _payload_json(payload), "pending",
                        int(now), _checked_run_at(run_at, now), 0, "", "",
                        "" if no_options else encode_options(unique_key, max_attempts, timeout))
        return job_id, line, unique_key

    def _write(self, job_id: str, line: bytes, unique_key: Optional[str]) -> str:
        if unique_key is None:
            self.table.append(line, durable=self.durable)
            return job_id
        twin = self.table.append(line, durable=self.durable,
                                 unless=lambda fd: self._unique_keys.job_with(fd, unique_key))
        return job_id if twin is None else twin

    def handler(self, job_type: str) -> Callable:
        """A decorator: ``@queue.handler("send_email")`` adds the function to
        ``queue.handlers``, for ``process_jobs(queue.handlers)``."""
        return register(self.handlers, job_type)

    def get_job(self, job_id: str) -> Optional[Dict[str, Any]]:
        """The job as a dict (see the README), or None if there is no such job."""
        found = self._find(job_id)
        if found is None:
            return None
        job, number = found
        try:
            return _as_dict(job)
        except ValueError as error:
            raise CorruptLineError(_corrupt_message(self.path, number, error)) from None

    def cancel_job(self, job_id: str) -> bool:
        """Cancel a pending job. True if it was pending and is now cancelled."""
        found = self._find(job_id)
        if found is None or found[0].status != "pending":
            return False
        return self._change_each(lambda job: job.evolve(
            status="cancelled", error="Cancelled by user", result="")
            if job.status == "pending" else None, only_id=job_id) == 1

    def retry_job(self, job_id: str) -> bool:
        """Put a failed or cancelled job back to pending, due now, with its attempts reset to
        0 (it gets ``max_attempts`` new ones; its last error stays until it runs). True if
        it was failed or cancelled."""
        found = self._find(job_id)
        if found is None or found[0].status not in ("failed", "cancelled"):
            return False
        now = int(self.clock())
        return self._change_each(lambda job: _retried(job, now)
                                 if job.status in ("failed", "cancelled") else None,
                                 only_id=job_id) == 1

    def retry_failed(self, job_type: Optional[str] = None) -> int:
        """retry_job for every failed job (of ``job_type``, if given); returns how many."""
        now = int(self.clock())
        return self._change_each(lambda job: _retried(job, now) if job.status == "failed" and
                                 job_type in (None, job.type) else None)

    def purge(self, older_than: float, statuses=("completed", "cancelled")) -> int:
        """Remove finished jobs (of ``statuses``) whose last activity, the later of
        created_at and run_at, is more than ``older_than`` seconds ago; returns how many."""
        check_number("older_than", older_than, zero_allowed=True)
        statuses = tuple(statuses)
        unknown = [s for s in statuses if s not in FINISHED]
        if not statuses or unknown:
            raise ValueError(f"purge removes finished jobs only: statuses must be among "
                             f"{', '.join(FINISHED)}, not {', '.join(unknown) or 'nothing'}")
        before = self.clock() - older_than
        return self._change_each(lambda job: _DROP if job.status in statuses and
                                 max(job.created_at, job.run_at) < before else None)

    def _change_each(self, change, only_id: Optional[str] = None) -> int:
        edit = self.table.rewrite(lambda: _EachJob(change, only_id))
        return 0 if edit is None else edit.count

    def jobs(self) -> Iterator[Dict[str, Any]]:
        """Every job in file order, as get_job dicts; corrupt lines are logged and skipped."""
        for number, line in self.table.lines():
            try:
                yield _as_dict(parse_line(line))
            except (CorruptLineError, ValueError) as error:
                logger.warning(_corrupt_message(self.path, number, error))

    def stats(self) -> Dict[str, Any]:
        """Counts by status and type, the queue's latency and the next scheduled run."""
        now = self.clock()
        by_status = dict.fromkeys(STATUSES, 0)
        by_type: Dict[str, Dict[str, int]] = {}
        oldest_due = next_run = None
        failed_last_hour = retrying = corrupt = 0
        for number, line in self.table.lines():
            try:
                job = parse_line(line)
            except CorruptLineError:
                corrupt += 1
                continue
            by_status[job.status] += 1
            counts = by_type.setdefault(job.type, dict.fromkeys(STATUSES, 0))
            counts[job.status] += 1
            if job.status == "pending":
                retrying += job.attempts > 0
                if job.run_at <= now:
                    oldest_due = job.run_at if oldest_due is None else min(oldest_due, job.run_at)
                else:
                    next_run = job.run_at if next_run is None else min(next_run, job.run_at)
            elif job.status == "failed" and job.run_at >= now - 3600:
                failed_last_hour += 1
        size = self.path.stat().st_size if self.path.exists() else 0
        return {"file": str(self.path), "size_bytes": size, "jobs": sum(by_status.values()),
                "by_status": by_status, "by_type": dict(sorted(by_type.items())),
                "oldest_due_seconds": None if oldest_due is None else max(0.0, now - oldest_due),
                "next_run_at": next_run, "retrying": retrying,
                "failed_last_hour": failed_last_hour, "corrupt_lines": corrupt}

    def _find(self, job_id):
        if not _is_plausible_id(job_id):
            return None
        prefix = job_id.encode() + b"\t"
        for number, line in self.table.lines():
            if line.startswith(prefix):
                try:
                    return parse_line(line), number
                except CorruptLineError as error:
                    raise CorruptLineError(_corrupt_message(self.path, number, error)) from None
        return None

    def process_jobs(self, handlers: Mapping[str, Callable[[dict], Any]],
                     max_attempts: int = DEFAULT_MAX_ATTEMPTS, *,
                     lease_seconds: float = DEFAULT_LEASE_SECONDS,
                     max_jobs: Optional[int] = None, max_seconds: Optional[float] = None,
                     retention_seconds: Optional[float] = DEFAULT_RETENTION_SECONDS,
                     timeout: Optional[float] = None) -> int:
        """Run the due jobs with ``handlers`` (job type -> callable taking the payload dict).

        A failed job is retried on the ``retry_delay`` schedule until it has had
        ``max_attempts`` attempts, then marked ``failed``. The run stops when no job is due,
        after ``max_jobs`` jobs, or once ``max_seconds`` have passed (the job in hand is
        finished). Completed and cancelled jobs older than ``retention_seconds`` (None:
        keep them) are dropped from the lines the run rewrites anyway. A handler running
        longer than ``timeout`` seconds (or its job's own timeout) is stopped and counts as a
        failed attempt. Returns how many jobs it ran.
        """
        options = _WorkerOptions(handlers, max_attempts, lease_seconds, retention_seconds, timeout)
        return _WorkerRun(self, options, _Bounds(max_jobs, max_seconds)).run()

    def work(self, handlers: Mapping[str, Callable[[dict], Any]],
             max_attempts: int = DEFAULT_MAX_ATTEMPTS, *,
             lease_seconds: float = DEFAULT_LEASE_SECONDS,
             max_jobs: Optional[int] = None, max_seconds: Optional[float] = None,
             retention_seconds: Optional[float] = DEFAULT_RETENTION_SECONDS,
             timeout: Optional[float] = None,
             stop: Optional[threading.Event] = None, handle_signals: bool = True) -> int:
        """Run jobs as they come, until stopped; returns how many ran.

        Between runs it watches the file's size and mtime (a cheap stat every 50 ms) and
        wakes for the next scheduled job, so a new job starts within about 50 ms and an idle
        worker costs next to nothing. It stops after ``max_jobs`` or ``max_seconds``, when
        ``stop`` is set, or (with ``handle_signals``, from the main thread) at SIGTERM or
        SIGINT: the job in hand finishes and is recorded first. A second signal exits at
        once, leaving that job to its lease.
        """
        options = _WorkerOptions(handlers, max_attempts, lease_seconds, retention_seconds, timeout)
        bounds = _Bounds(max_jobs, max_seconds)
        stop = stop or threading.Event()
        with _stop_on_signals(stop) if handle_signals else contextlib.nullcontext():
            ran = 0
            while not stop.is_set() and not bounds.reached(ran):
                run = _WorkerRun(self, options, bounds.less(ran), stop)
                ran += run.run()
                if run.ran or stop.is_set():
                    continue
                seen, rescan_at = self.table.signature(), time.monotonic() + _IDLE_RESCAN_SECONDS
                while not stop.wait(_IDLE_CHECK_SECONDS) and not bounds.reached(ran):
                    if (self.table.signature() != seen or time.monotonic() >= rescan_at or
                            (run.next_due is not None and self.clock() >= run.next_due)):
                        break
        return ran


# --- the worker ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _WorkerOptions:
    """The settings of a worker, checked once."""

    handlers: Mapping[str, Callable[[dict], Any]]
    max_attempts: int
    lease_seconds: float
    retention_seconds: Optional[float]
    timeout: Optional[float]

    def __post_init__(self) -> None:
        _check_handlers(self.handlers)
        check_number("max_attempts", self.max_attempts, integer=True)
        check_number("lease_seconds", self.lease_seconds)
        if self.retention_seconds is not None:
            check_number("retention_seconds", self.retention_seconds)
        if self.timeout is not None:
            check_number("timeout", self.timeout)


class _Bounds:
    """How much one worker may do: at most ``max_jobs`` jobs, until ``max_seconds`` from now."""

    def __init__(self, max_jobs: Optional[int], max_seconds: Optional[float]) -> None:
        if max_jobs is not None:
            check_number("max_jobs", max_jobs, integer=True)
        if max_seconds is not None:
            check_number("max_seconds", max_seconds)
        self.max_jobs = max_jobs
        self.deadline = None if max_seconds is None else time.monotonic() + max_seconds

    def reached(self, ran: int) -> bool:
        return ((self.max_jobs is not None and ran >= self.max_jobs) or
                (self.deadline is not None and time.monotonic() >= self.deadline))

    def less(self, ran: int) -> "_Bounds":
        """The bounds left after ``ran`` jobs, with the same deadline."""
        left = _Bounds(None if self.max_jobs is None else self.max_jobs - ran, None)
        left.deadline = self.deadline
        return left

    def room(self, ran: int, batch: int) -> int:
        return batch if self.max_jobs is None else min(batch, self.max_jobs - ran)


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event):
    """SIGTERM and SIGINT set ``stop``; a second one ends the process at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def on_signal(signum, frame):
        if stop.is_set():
            logger.warning("second %s: exiting now; the job in hand is left to its lease",
                           signal.Signals(signum).name)
            os._exit(128 + signum)
        logger.info("%s: finishing the job in hand, then exiting", signal.Signals(signum).name)
        stop.set()
    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@dataclass
class _Held:
    """A job this worker run has claimed and whose final state is not on disk yet."""

    __slots__ = ("original", "claimed_at", "lease_until", "max_attempts", "timeout")
    original: Job  # as it was before the claim, to put back if it never starts
    claimed_at: float
    lease_until: float
    max_attempts: int  # the job's own, or the worker's
    timeout: Optional[float]

    @property
    def attempt(self) -> int:
        return self.original.attempts + 1

    def line(self) -> bytes:
        """The line this worker last wrote for the job: if the file holds another, another
        worker has taken the job since (this worker's lease ran out)."""
        job = self.original
        return job_line(job.id, job.type, job.payload, "processing", job.created_at,
                        math.ceil(self.lease_until), job.attempts + 1, job.error, job.result,
                        job.options)


class _WorkerRun:
    """One call of process_jobs: claim a batch, run it, record it, until done.

    A keeper thread writes finished results that have waited RESULT_WINDOW_SECONDS, and
    renews the leases of held jobs before half their time is gone, while a handler runs.
    """

    def __init__(self, queue: Queue, options: _WorkerOptions, bounds: _Bounds,
                 stop: Optional[threading.Event] = None) -> None:
        self.queue = queue
        self.handlers = options.handlers
        self.max_attempts = options.max_attempts
        self.timeout = options.timeout
        self.lease_seconds = options.lease_seconds
        self.retention_seconds = options.retention_seconds
        self.bounds = bounds
        self.stop = stop or threading.Event()
        self.ran = 0
        self.next_due: Optional[int] = None  # the earliest run_at of a job not due yet
        self.held: Dict[bytes, _Held] = {}
        self.to_run: deque = deque()  # ids of held jobs not started yet, in claim order
        self.finished: Dict[bytes, bytes] = {}  # final lines waiting to be written
        self.oldest_unwritten: Optional[float] = None  # monotonic time of the oldest of them
        self.reported: set = set()  # corrupt lines already logged in this run
        self.state_lock = threading.Lock()  # guards held, to_run, finished
        self.sync_lock = threading.Lock()  # one rewrite at a time
        self.stopping = threading.Event()
        self.bookmark = None  # where the next rewrite may resume (see table.Bookmark)
        self.last_sync_resumed = False

    def run(self) -> int:
        self.queue.table.remove_stale_temporary_files(older_than=3600, now=time.time())
        keeper = threading.Thread(target=self._keep, name="dbbasic-queue-keeper", daemon=True)
        keeper.start()
        batch = _FIRST_BATCH
        try:
            while not self._must_stop():
                limit = self.bounds.room(self.ran, batch)
                if not self._sync(claim=limit) and not (
                        self.last_sync_resumed and self._sync(claim=limit, full=True)):
                    break  # no due job left, in a look at the whole file
                started, count = time.perf_counter(), 0
                while self.to_run and not self._must_stop():
                    with self.state_lock:
                        held = self.held.get(self.to_run.popleft())
                    if held is not None:  # None: its lease was lost before it started
                        self._run_one(held)
                        count += 1
                        self.ran += 1
                per_job = (time.perf_counter() - started) / max(count, 1)
                batch = max(1, min(_MAX_BATCH, batch * 8, int(_BATCH_SECONDS / max(per_job, 1e-6))))
        finally:
            self.stopping.set()
            keeper.join()
            self._sync(release=True)
            if self.bookmark is not None:
                self.bookmark.close()
        return self.ran

    def _must_stop(self) -> bool:
        return self.stop.is_set() or self.bounds.reached(self.ran)

    def _run_one(self, held: _Held) -> None:
        job = held.original
        handler = self.handlers.get(job.type)
        logger.info("job %s %s started (attempt %d of %d)", job.id, job.type, held.attempt,
                    held.max_attempts)
        started = time.perf_counter()
        try:
            if handler is None:
                raise LookupError(f"no handler for job type {job.type!r}; add one to the handlers "
                                  f"given to process_jobs")
            with time_limit(held.timeout or self.timeout):
                result = handler(json.loads(job.payload))
        except Retry as retry:  # asked for, not a failure: the attempt is not counted
            run_at = retry.run_at(self.queue.clock())
            self._record(held, job.evolve(status="pending", run_at=run_at))
            logger.info("job %s %s will run again at %s, as it asked (%s)", job.id, job.type,
                        _utc(run_at), retry)
        except JobTimeout as error:
            self._record(held, self._failure(held, str(error)))
        except Exception as error:
            self._record(held, self._failure(held, _error_text(error)))
        except BaseException as error:  # KeyboardInterrupt, SystemExit: try again at once
            self._record(held, held.original.evolve(
                status="pending", attempts=held.attempt, run_at=int(self.queue.clock()),
                error=_error_text(error)))
            logger.warning("job %s %s interrupted by %s; it will run again", job.id, job.type,
                           type(error).__name__)
            raise
        else:
            self._record(held, job.evolve(status="completed", attempts=held.attempt,
                                          run_at=int(held.claimed_at), error="",
                                          result=_result_json(result, job.id, job.type)))
            logger.info("job %s %s completed in %.1f ms", job.id, job.type,
                        (time.perf_counter() - started) * 1000)

    def _failure(self, held: _Held, text: str) -> Job:
        job = held.original
        if held.attempt >= held.max_attempts:
            logger.error("job %s %s failed for good after %d attempts: %s", job.id, job.type,
                         held.attempt, text)
            return job.evolve(status="failed", attempts=held.attempt,
                              run_at=int(held.claimed_at), error=text)
        retry_at = math.ceil(self.queue.clock() + retry_delay(held.attempt, random=self.queue.random))
        logger.warning("job %s %s failed (attempt %d of %d): %s; next try at %s", job.id, job.type,
                       held.attempt, held.max_attempts, text, _utc(retry_at))
        return job.evolve(status="pending", attempts=held.attempt, run_at=retry_at, error=text)

    def _record(self, held: _Held, final: Job) -> None:
        with self.state_lock:
            self.finished[held.original.id.encode()] = final.to_line()
            if self.oldest_unwritten is None:
                self.oldest_unwritten = time.monotonic()

    def _keep(self) -> None:
        while not self.stopping.wait(_KEEPER_TICK_SECONDS):
            renew_before = self.queue.clock() + self.lease_seconds / 2
            with self.state_lock:
                results_waiting = (self.oldest_unwritten is not None and
                                   time.monotonic() - self.oldest_unwritten >= RESULT_WINDOW_SECONDS)
                lease_ending = any(h.lease_until < renew_before for h in self.held.values())
            if results_waiting or lease_ending:
                try:
                    self._sync()
                except Exception:
                    logger.exception("could not write results or renew leases; trying again")

    def _sync(self, claim: int = 0, release: bool = False, full: bool = False) -> List[bytes]:
        """Write finished jobs, renew held leases, claim up to ``claim`` due jobs, and (with
        ``release``) put held jobs that never started back; all in one rewrite. Returns the
        ids claimed. Unless ``full``, it starts at the bookmark: jobs before it that have
        become due since the last look wait for a full look (every run ends with one)."""
        with self.sync_lock:
            with self.state_lock:
                held, finished = dict(self.held), dict(self.finished)
                unstarted = set(self.to_run) if release else set()
            if not claim and not held:
                return []
            now = self.queue.clock()
            drop_before = None if self.retention_seconds is None else now - self.retention_seconds
            resume = None if full else self.bookmark
            sync = self.queue.table.rewrite(lambda: _Sync(
                held, finished, unstarted, now, now + self.lease_seconds, claim,
                self.max_attempts, drop_before), resume)
            self.last_sync_resumed = resume is not None
            if sync is None:
                return []
            if claim and len(sync.claimed) < claim and resume is None:
                self.next_due = sync.next_due  # it looked at every line
            if sync.bookmark is not None or sync.changed:
                if self.bookmark is not None:
                    self.bookmark.close()
                self.bookmark = sync.bookmark
            with self.state_lock:
                for job_id in sync.settled:
                    self.held.pop(job_id, None)
                    self.finished.pop(job_id, None)
                for job_id in sync.renewed:
                    self.held[job_id].lease_until = sync.lease_until
                self.held.update(sync.claimed)
                self.to_run.extend(sync.claimed)
                if release:
                    self.to_run.clear()
                if not self.finished:
                    self.oldest_unwritten = None
            self._report(sync)
            return list(sync.claimed)

    def _report(self, sync: "_Sync") -> None:
        for job_id in sync.lost:
            logger.warning("job %s: another worker took it after its lease ran out (was this "
                           "process stopped?); its result here is not recorded", job_id.decode())
        for job in sync.abandoned:
            logger.error("job %s %s failed for good: %s", job.id, job.type, job.error)
        for job in sync.retaken:
            logger.warning("job %s %s: the worker of attempt %d stopped without a result; "
                           "trying again", job.id, job.type, job.attempts)
        if sync.dropped:
            logger.info("dropped %d completed or cancelled jobs older than %s days (retention)",
                        sync.dropped, f"{self.retention_seconds / 86400:g}")
        for line, reason in sync.corrupt:
            if line not in self.reported:
                self.reported.add(line)
                logger.warning("%s: a corrupt line, left as it is (%s): %s", self.queue.path,
                               reason, line[:120].decode("utf-8", "replace").rstrip())


class _Sync(Editor):
    """The rewrite behind _WorkerRun._sync: decides the new line for every line of the file.

    This is the claim logic. A line is claimed when it is ``pending`` and due, or
    ``processing`` with its lease (``run_at``) run out, which means its worker died; such a
    job already used ``max_attempts`` attempts is marked ``failed`` instead.
    """

    def __init__(self, held, finished, unstarted, now, lease_until, claim, max_attempts,
                 drop_before=None):
        self.held, self.finished, self.unstarted = held, finished, unstarted
        self.now, self.lease_until = now, lease_until
        self.claim, self.max_attempts = claim, max_attempts
        self.drop_before = drop_before  # retention: finished jobs older than this go
        self.dropped = 0
        self.next_due: Optional[int] = None
        self.settled: set = set()  # final state written, put back unstarted, or lease lost
        self.renewed: set = set()
        self.claimed: Dict[bytes, _Held] = {}
        self.lost: List[bytes] = []
        self.abandoned: List[Job] = []
        self.retaken: List[Job] = []
        self.corrupt: list = []
        self.held_seen = 0

    @property
    def done(self) -> bool:
        return self.held_seen == len(self.held) and len(self.claimed) >= self.claim

    def __call__(self, line: bytes) -> bytes:
        job_id = line[:line.find(b"\t")]
        mine = self.held.get(job_id)
        if mine is None:
            return self._not_mine(job_id, line)
        self.held_seen += 1
        if line != mine.line():
            self.lost.append(job_id)
            self.settled.add(job_id)
            return line
        self.changed = True
        if job_id in self.finished:
            self.settled.add(job_id)
            return self.finished[job_id]
        if job_id in self.unstarted:
            self.settled.add(job_id)
            return mine.original.to_line()
        self.renewed.add(job_id)
        if self.resume_offset is None:  # the first line still held after this rewrite
            self.resume_offset = self.position
        return _Held(mine.original, mine.claimed_at, self.lease_until, mine.max_attempts,
                     mine.timeout).line()

    def _not_mine(self, job_id: bytes, line: bytes) -> Optional[bytes]:
        claiming = len(self.claimed) < self.claim
        if not claiming and self.drop_before is None:
            return line
        fields = line.split(b"\t", 7)
        if len(fields) != 8 or fields[3] not in STATUS_WORDS or not fields[5].isdigit():
            return self._claim(job_id, line) if claiming else line  # parses it to report it
        status, run_at = fields[3], int(fields[5])
        if status in _STATUS_CLAIMABLE:
            if claiming and run_at <= self.now:
                return self._claim(job_id, line)
            if self.next_due is None or run_at < self.next_due:
                self.next_due = run_at
        elif (status in _STATUS_RETAINED and self.drop_before is not None and
              run_at < self.drop_before and fields[4].isdigit() and int(fields[4]) < self.drop_before
              and _reads(line)):
            self.dropped += 1
            return None  # retention; not a change by itself: only a rewrite done anyway drops
        return line

    def _claim(self, job_id: bytes, line: bytes) -> bytes:
        try:
            job = parse_line(line)
            if not isinstance(json.loads(job.payload), dict):
                raise CorruptLineError("its payload is not a JSON object")
            options = decode_options(job.options)
        except (CorruptLineError, ValueError) as error:
            self.corrupt.append((line, str(error)))
            return line
        max_attempts = options.get("max_attempts") or self.max_attempts
        if job.run_at > self.now or job.status not in ("pending", "processing"):
            return line
        self.changed = True
        if job.status == "processing":
            if job.attempts >= max_attempts:
                job = job.evolve(status="failed", error=(
                    f"the worker of attempt {job.attempts} stopped without a result (killed, "
                    f"or it lost its lease), and that was the last attempt"))
                self.abandoned.append(job)
                return job.to_line()
            self.retaken.append(job)
        held = self.claimed[job_id] = _Held(job, self.now, self.lease_until, max_attempts,
                                            options.get("timeout"))
        if self.resume_offset is None:
            self.resume_offset = self.position
        return held.line()


STATUS_WORDS = frozenset(status.encode() for status in STATUSES)
_STATUS_CLAIMABLE = (b"pending", b"processing")
_STATUS_RETAINED = (b"completed", b"cancelled")  # failed jobs stay until purged


def _reads(line: bytes) -> bool:
    try:
        parse_line(line)
        return True
    except CorruptLineError:
        return False


_DROP = object()  # what a change returns to remove the job


class _EachJob(Editor):
    """The rewrite behind cancel, retry and purge: ``change(job)`` returns the job's new
    version, _DROP, or None to leave it. Corrupt lines are left alone. With ``only_id``,
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
        return None if new is _DROP else new.to_line()


def _retried(job: Job, now: int) -> Job:
    return job.evolve(status="pending", run_at=now, attempts=0, result="")


# --- checking arguments and converting values -----------------------------------------------

_known_job_types: set = set()  # job types already checked: an app uses a handful


def _checked_job_type(job_type) -> str:
    if type(job_type) is str and job_type in _known_job_types:
        return job_type
    if not isinstance(job_type, str):
        raise TypeError(f"job_type must be a str such as 'send_email', not {type(job_type).__name__}")
    if not job_type or job_type != one_line(job_type) or job_type != job_type.strip():
        raise ValueError(f"job_type {job_type!r} must be a non-empty name without tabs, line "
                         f"breaks or surrounding spaces, such as 'send_email'")
    _check_encodable("job_type", job_type)
    if len(_known_job_types) < 1000:
        _known_job_types.add(job_type)
    return job_type


def _checked_run_at(run_at, now: float) -> int:
    if run_at is None:
        return int(now)
    if isinstance(run_at, bool) or not isinstance(run_at, (int, float)):
        raise TypeError(f"run_at must be a Unix timestamp (int or float, e.g. time.time() + 60), "
                        f"not {type(run_at).__name__}")
    if not math.isfinite(run_at) or run_at < 0:
        raise ValueError(f"run_at must be a finite Unix timestamp >= 0, not {run_at!r}")
    return math.ceil(run_at)  # never earlier than asked


def _payload_json(payload) -> str:
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a dict, not {type(payload).__name__}")
    try:
        return _to_json(payload)
    except (TypeError, ValueError) as error:
        raise TypeError(f"payload is not JSON-serialisable ({error}); use only dict, list, str, "
                        f"int, float, bool and None") from None


_json_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False)  # unicode stays readable


def _to_json(value) -> str:
    text = _json_encoder.encode(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: escaped JSON reads back the same
            text = json.dumps(value, allow_nan=False)
    return text


def _result_json(result, job_id: str, job_type: str) -> str:
    if result is None:
        return ""
    try:
        return _to_json(result)
    except (TypeError, ValueError) as error:
        logger.warning("job %s %s: its result is not JSON-serialisable (%s); stored as a string",
                       job_id, job_type, error)
        return _to_json(str(result))


def _error_text(error: BaseException) -> str:
    text = one_line(f"{type(error).__name__}: {error}")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _check_encodable(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} {value!r} holds text that is not valid Unicode") from None


def _check_handlers(handlers) -> None:
    if not isinstance(handlers, Mapping):
        raise TypeError(f"handlers must be a dict mapping job types to functions, "
                        f"not {type(handlers).__name__}")
    for job_type, handler in handlers.items():
        if not callable(handler):
            raise TypeError(f"the handler for {job_type!r} is not callable "
                            f"({type(handler).__name__}); pass the function itself")


def _is_plausible_id(job_id) -> bool:
    return isinstance(job_id, str) and bool(job_id) and not any(c in job_id for c in '\t\r\n"')


def _as_dict(job: Job) -> Dict[str, Any]:
    """The published get_job shape. Raises ValueError if the JSON in the line is broken."""
    return {"id": job.id, "type": job.type,
            "payload": json.loads(job.payload) if job.payload else {},
            "status": job.status, "created_at": job.created_at, "run_at": job.run_at,
            "attempts": job.attempts, "error": job.error or None,
            "result": json.loads(job.result) if job.result else None}


def _corrupt_message(path, number: int, error: Exception) -> str:
    return f"{path}, line {number}: a corrupt line ({error}); fix or remove it by hand"


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))
