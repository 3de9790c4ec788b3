"""The TSV queue's worker: one run of ``process_jobs``, and the long-running loop of ``work``.

A run claims due jobs in batches (one atomic rewrite marks them ``processing`` with a lease),
runs them, and records their results in batches at most about a second old. While it runs, a
keeper thread renews its leases, so no other worker takes its jobs; a job whose worker died
is taken again once its lease has run out. The wall clock, a monotonic clock and randomness
come from the queue, so tests move time by hand.
"""

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional

from . import transitions
from .checks import check_handlers, check_number
from .claim import ClaimEditor, ClaimOutcome, Held
from .job import Job, error_text, result_json
from .options import Retry
from .timelimit import JobTimeout, time_limit

logger = logging.getLogger("dbbasic_queue")

RESULT_WINDOW_SECONDS = 1.0  # a finished job's result reaches the file within about this long
IDLE_CHECK_SECONDS = 0.05  # how often an idle loop worker looks at the file's size and mtime
IDLE_RESCAN_SECONDS = 60.0  # and reads it anyway, at least this often
KEEPER_TICK_SECONDS = 0.2
BATCH_SECONDS = 0.5  # aim for batches of about this much work
FIRST_BATCH, MAX_BATCH = 8, 6000  # a held job costs about 2 KB of peak memory
STALE_TEMPORARY_SECONDS = 3600


@dataclass(frozen=True)
class WorkerOptions:
    """The settings of a worker, checked once, before the file is touched."""

    handlers: Mapping[str, Callable[[dict], Any]]
    max_attempts: int
    lease_seconds: float
    retention_seconds: Optional[float]
    timeout: Optional[float]

    def __post_init__(self) -> None:
        check_handlers(self.handlers)
        check_number("max_attempts", self.max_attempts, integer=True)
        check_number("lease_seconds", self.lease_seconds)
        if self.retention_seconds is not None:
            check_number("retention_seconds", self.retention_seconds)
        if self.timeout is not None:
            check_number("timeout", self.timeout)


class Bounds:
    """How much one worker may do: at most ``max_jobs`` jobs, until ``max_seconds`` from now
    on the ``monotonic`` clock."""

    def __init__(self, max_jobs: Optional[int], max_seconds: Optional[float],
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if max_jobs is not None:
            check_number("max_jobs", max_jobs, integer=True)
        if max_seconds is not None:
            check_number("max_seconds", max_seconds)
        self.max_jobs = max_jobs
        self.monotonic = monotonic
        self.deadline = None if max_seconds is None else monotonic() + max_seconds

    def reached(self, ran: int) -> bool:
        return ((self.max_jobs is not None and ran >= self.max_jobs) or
                (self.deadline is not None and self.monotonic() >= self.deadline))

    def less(self, ran: int) -> "Bounds":
        """The bounds left after ``ran`` jobs, with the same deadline."""
        left = Bounds(None if self.max_jobs is None else self.max_jobs - ran, None, self.monotonic)
        left.deadline = self.deadline
        return left

    def room(self, ran: int, batch: int) -> int:
        return batch if self.max_jobs is None else min(batch, self.max_jobs - ran)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event):
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


def work_loop(queue, options: WorkerOptions, bounds: Bounds, stop: threading.Event) -> int:
    """Runs of WorkerRun until stopped; between them, watch the file (a stat every 50 ms)
    and wake for the next scheduled job. Returns how many jobs ran."""
    ran = 0
    while not stop.is_set() and not bounds.reached(ran):
        run = WorkerRun(queue, options, bounds.less(ran), stop)
        ran += run.run()
        if run.ran or stop.is_set():
            continue
        seen, rescan_at = queue.table.signature(), queue.monotonic() + IDLE_RESCAN_SECONDS
        while not stop.wait(IDLE_CHECK_SECONDS) and not bounds.reached(ran):
            if (queue.table.signature() != seen or queue.monotonic() >= rescan_at or
                    (run.next_due is not None and queue.clock() >= run.next_due)):
                break
    return ran


class WorkerRun:
    """One call of process_jobs: claim a batch, run it, record it, until done.

    A keeper thread writes finished results that have waited RESULT_WINDOW_SECONDS, and
    renews the leases of held jobs before half their time is gone, while a handler runs.
    """

    def __init__(self, queue, options: WorkerOptions, bounds: Bounds,
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
        self.held: Dict[bytes, Held] = {}
        self.to_run: deque = deque()  # ids of held jobs not started yet, in claim order
        self.finished: Dict[bytes, bytes] = {}  # final lines waiting to be written
        self.oldest_unwritten: Optional[float] = None  # monotonic time of the oldest of them
        self.reported: set = set()  # corrupt lines already logged in this run
        self.state_lock = threading.Lock()  # guards held, to_run, finished
        self.sync_lock = threading.Lock()  # one rewrite at a time
        self.stopping = threading.Event()
        self.bookmark = None  # where the next rewrite may resume (see storage.Bookmark)
        self.last_sync_resumed = False

    def run(self) -> int:
        self.queue.table.remove_stale_temporary_files(older_than=STALE_TEMPORARY_SECONDS,
                                                      now=time.time())
        keeper = threading.Thread(target=self._keep, name="dbbasic-queue-keeper", daemon=True)
        keeper.start()
        batch = FIRST_BATCH
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
                batch = max(1, min(MAX_BATCH, batch * 8, int(BATCH_SECONDS / max(per_job, 1e-6))))
        finally:
            self.stopping.set()
            keeper.join()
            self._sync(release=True)
            if self.bookmark is not None:
                self.bookmark.close()
        return self.ran

    def _must_stop(self) -> bool:
        return self.stop.is_set() or self.bounds.reached(self.ran)

    def _run_one(self, held: Held) -> None:
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
            self._record(held, transitions.reschedule(job, run_at))
            logger.info("job %s %s will run again at %s, as it asked (%s)", job.id, job.type,
                        utc(run_at), retry)
        except JobTimeout as error:
            self._record(held, self._failure(held, str(error)))
        except Exception as error:
            self._record(held, self._failure(held, error_text(error)))
        except BaseException as error:  # KeyboardInterrupt, SystemExit: try again at once
            self._record(held, held.original.evolve(
                status="pending", attempts=held.attempt, run_at=int(self.queue.clock()),
                error=error_text(error)))
            logger.warning("job %s %s interrupted by %s; it will run again", job.id, job.type,
                           type(error).__name__)
            raise
        else:
            self._record(held, transitions.complete(job, held.claimed_at,
                                                    result_json(result, job.id, job.type)))
            logger.info("job %s %s completed in %.1f ms", job.id, job.type,
                        (time.perf_counter() - started) * 1000)

    def _failure(self, held: Held, text: str) -> Job:
        job = transitions.fail(held.original, text, self.queue.clock(), held.claimed_at,
                               held.max_attempts, random=self.queue.random)
        if job.status == "failed":
            logger.error("job %s %s failed for good after %d attempts: %s", job.id, job.type,
                         held.attempt, text)
        else:
            logger.warning("job %s %s failed (attempt %d of %d): %s; next try at %s", job.id,
                           job.type, held.attempt, held.max_attempts, text, utc(job.run_at))
        return job

    def _record(self, held: Held, final: Job) -> None:
        with self.state_lock:
            self.finished[held.original.id.encode()] = final.to_line()
            if self.oldest_unwritten is None:
                self.oldest_unwritten = self.queue.monotonic()

    def _keep(self) -> None:
        while not self.stopping.wait(KEEPER_TICK_SECONDS):
            renew_before = self.queue.clock() + self.lease_seconds / 2
            with self.state_lock:
                results_waiting = (self.oldest_unwritten is not None and
                                   self.queue.monotonic() - self.oldest_unwritten >= RESULT_WINDOW_SECONDS)
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
            edit = self.queue.table.rewrite(lambda: ClaimEditor(
                held, finished, unstarted, now, now + self.lease_seconds, claim,
                self.max_attempts, drop_before), resume)
            self.last_sync_resumed = resume is not None
            if edit is None:
                return []
            outcome = edit.outcome
            if claim and len(outcome.claimed) < claim and resume is None:
                self.next_due = outcome.next_due  # it looked at every line
            if edit.bookmark is not None or edit.changed:
                if self.bookmark is not None:
                    self.bookmark.close()
                self.bookmark = edit.bookmark
            with self.state_lock:
                for job_id in outcome.settled:
                    self.held.pop(job_id, None)
                    self.finished.pop(job_id, None)
                for job_id in outcome.renewed:
                    self.held[job_id].lease_until = edit.lease_until
                self.held.update(outcome.claimed)
                self.to_run.extend(outcome.claimed)
                if release:
                    self.to_run.clear()
                if not self.finished:
                    self.oldest_unwritten = None
            self._report(outcome)
            return list(outcome.claimed)

    def _report(self, outcome: ClaimOutcome) -> None:
        for job_id in outcome.lost:
            logger.warning("job %s: another worker took it after its lease ran out (was this "
                           "process stopped?); its result here is not recorded", job_id.decode())
        for job in outcome.abandoned:
            logger.error("job %s %s failed for good: %s", job.id, job.type, job.error)
        for job in outcome.retaken:
            logger.warning("job %s %s: the worker of attempt %d stopped without a result; "
                           "trying again", job.id, job.type, job.attempts)
        if outcome.dropped:
            logger.info("dropped %d completed or cancelled jobs older than %s days (retention)",
                        outcome.dropped, f"{self.retention_seconds / 86400:g}")
        for line, reason in outcome.corrupt:
            if line not in self.reported:
                self.reported.add(line)
                logger.warning("%s: a corrupt line, left as it is (%s): %s", self.queue.path,
                               reason, line[:120].decode("utf-8", "replace").rstrip())


def utc(timestamp: float) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM:SS UTC``, for logs."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))
