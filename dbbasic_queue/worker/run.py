"""One run of the TSV queue's worker (``process_jobs``): claim, run, record, until no job is due.

A run claims due jobs in batches, runs them (one at a time, or ``concurrency`` at once in
threads; ``_run_one`` is one job's life in the worker: its handler called, its outcome
decided by ``model/transitions.py``), and records their results in batches at most about a
second old. Everything it asks of the files goes through ``storage/engine.py``'s
``RunStorage``: one exchange per batch (one atomic rewrite that writes results, renews
leases and claims), the run's liveness lock (so no other worker takes its jobs while it
lives) and each job's start (so that if it dies only those count an attempt). A keeper
thread renews its leases while handlers run. The wall clock, a monotonic clock and
randomness come from the queue, so tests move time by hand.
"""

import json
import logging
import math
import threading
import time
from collections import deque
from typing import Dict, List, Optional

from .. import hooks
from ..model import transitions
from ..model.job import CANCELLED, FAILED, PENDING, Job, error_text, result_json, utc_text
from ..model.options import Retry, schedules_of
from ..model.words import plural
from ..storage.claim import Held
from ..storage.engine import Exchange, RunStorage
from ..storage.workers import HEARTBEAT_SECONDS, WorkerRecord
from .control import JobControl, JobStopped
from .running import RunningJob, running
from .timelimit import JobTimeout, Watchdog, call_with_time_limit
from .settings import Bounds, WorkerOptions

logger = logging.getLogger("dbbasic_queue")

RESULT_WINDOW_SECONDS = 1.0  # a finished job's result reaches the file within about this long
KEEPER_TICK_SECONDS = 0.2
BATCH_SECONDS = 0.5  # aim for batches of about this much work
FIRST_BATCH, MAX_BATCH = 8, 4000  # a held job costs about 2.5 KB of peak memory
CLAIM_SHARE = 4  # a batch holds at least this many times its claim's cost in work


class WorkerRun:
    """One call of process_jobs. ``next_due`` is, after the run, the earliest run_at of a job
    that was not due yet, and ``next_slot`` when a periodic job may next fall due (for the
    loop worker's sleep). A run given handlers with schedules fires their due slots first,
    and again from its keeper thread while it runs."""

    def __init__(self, queue, options: WorkerOptions, bounds: Bounds,
                 stop: Optional[threading.Event] = None,
                 record: Optional[WorkerRecord] = None) -> None:
        self.queue = queue
        # How it appears in the worker registry: a cron run, unless a loop worker's run.
        self.record = record or WorkerRecord("cron", options.serves, options.concurrency,
                                             queue.clock())
        self.last_report = queue.monotonic()
        self.options = options
        self.bounds = bounds
        self.stop = stop or threading.Event()
        self.ran = 0  # jobs finished and recorded
        self.started = 0  # jobs handed to a handler
        self.no_more_due = False  # a claim in a look at the whole file found none
        self.claim_lock = threading.Lock()  # one claiming thread at a time
        self.batch = max(FIRST_BATCH, 2 * options.concurrency)
        self.batch_aim = BATCH_SECONDS * (1 if options.concurrency == 1 else 4)
        self.last_claim = 0.0  # perf_counter time of the last claim, to size the next batch
        self.started_at_claim = 0
        self.claim_seconds = 0.0  # what the last claim took itself
        self.storage = RunStorage(queue, options)
        self.control = JobControl(self.storage, queue.monotonic, queue.clock, options.stop_grace)
        self.held: Dict[bytes, Held] = {}
        self.to_run: deque = deque()  # ids of held jobs not started yet, in claim order
        self.finished: Dict[bytes, bytes] = {}  # final lines waiting to be written
        self.oldest_unwritten: Optional[float] = None  # monotonic time of the oldest of them
        self.state_lock = threading.Lock()  # guards held, to_run, finished, ran
        self.sync_lock = threading.Lock()  # one exchange at a time
        self.stopping = threading.Event()
        self.watchdog: Optional[Watchdog] = None
        self.outcomes: Dict[str, int] = {}  # completed, failed, to retry, rescheduled: counts
        self.ahead_found_none = False  # a claim ahead of the batch's end found no job
        self.ahead_mark = options.concurrency  # claim ahead below this many jobs left to start
        schedules = schedules_of(options.handlers)
        self.firing = None
        if schedules:
            from ..periodic.firing import Firing  # only a run with schedules loads it
            self.firing = Firing(queue, schedules)

    @property
    def next_due(self) -> Optional[int]:
        return self.storage.next_due

    @property
    def next_slot(self) -> Optional[float]:
        return None if self.firing is None else self.firing.next_due

    def run(self) -> int:
        if self.firing is not None:
            self.firing.fire()  # before the due jobs are claimed, so a due slot's job runs now
        if not self.storage.open():
            return 0  # no directory, so no queue file: nothing to run
        keeper = threading.Thread(target=self._keep, name="dbbasic-queue-keeper", daemon=True)
        keeper.start()
        began = time.perf_counter()
        try:
            if self.options.concurrency == 1:
                self._serve()  # in this thread: SIGALRM time limits, Ctrl-C as usual
            else:
                self._serve_in_threads()
        finally:
            self.stopping.set()
            keeper.join()
            try:
                self._sync(release=True)
            finally:
                self.storage.close()
                self.report()
        if self.ran:
            logger.info("ran %s in %.2f s: %s", plural(self.ran, "job"),
                        time.perf_counter() - began,
                        ", ".join(f"{count} {what}" for what, count in sorted(self.outcomes.items())))
        else:  # at DEBUG: cron's every minute and a loop worker's every rescan would fill a log
            logger.debug("ran 0 jobs in %.2f s", time.perf_counter() - began)
        return self.ran

    def _serve_in_threads(self) -> None:
        self.watchdog = Watchdog(self.queue.monotonic)
        threads = [threading.Thread(target=self._serve, name=f"dbbasic-queue-job-{n}", daemon=True)
                   for n in range(self.options.concurrency)]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.5)  # in slices, so this thread still handles SIGTERM
        except BaseException:
            self.stop.set()  # Ctrl-C here: the threads finish their jobs and take no more
            raise
        finally:
            for thread in threads:
                thread.join()
            self.watchdog.close()

    def _serve(self) -> None:
        """Run held jobs until none is left to take; each thread serves itself, and the one
        that finds the batch empty claims the next (one claim at a time, while the others
        go on with the jobs they have), so no thread waits on a dispatcher."""
        while True:
            held = self._next_job()
            if held is None:
                return
            try:
                self._run_one(held)
            except KeyboardInterrupt:
                if threading.current_thread() is threading.main_thread():
                    raise  # Ctrl-C in a cron run: stop; jobs not started are put back
                self.stop.set()
            except BaseException:  # a bug of ours: log it, never lose the thread silently
                logger.exception("job %s: the worker failed while recording it", held.original.id)
            finally:
                with self.state_lock:
                    self.ran += 1

    def _next_job(self) -> Optional[Held]:
        while True:
            with self.state_lock:
                if self._must_stop() or self.no_more_due:
                    return None
                held = None
                while self.to_run and held is None:
                    # None: its lease was lost before it started
                    held = self.held.get(self.to_run.popleft())
                if held is not None:
                    self.started += 1
                    ahead = (self.options.concurrency > 1 and not self.ahead_found_none
                             and len(self.to_run) < self.ahead_mark)
            if held is not None:
                if ahead:
                    self._claim_ahead()
                return held
            with self.claim_lock:
                with self.state_lock:
                    if self.to_run or self.no_more_due or self._must_stop():
                        continue  # another thread claimed meanwhile, or it is over
                    limit = self._claim_size()
                began = time.perf_counter()
                self.ahead_found_none = False
                if not self._sync(claim=limit) and not (
                        self.storage.resumed and self._sync(claim=limit, full=True)):
                    with self.state_lock:
                        self.no_more_due = True  # in a look at the whole file
                self.claim_seconds = time.perf_counter() - began

    def _claim_ahead(self) -> None:
        """With threads, the next batch is claimed by a thread that finds fewer jobs left to
        start than the others run while a claim takes (``ahead_mark``), before it runs its own
        job: the other threads go on with theirs meanwhile, so none waits for the claim. One
        claim at a time; one that finds nothing leaves the next to the end of the batch
        (which looks at the whole file)."""
        if not self.claim_lock.acquire(blocking=False):
            return  # another thread is claiming
        try:
            with self.state_lock:
                if (self._must_stop() or self.no_more_due or self.ahead_found_none
                        or len(self.to_run) >= self.ahead_mark):
                    return
                limit = self._claim_size()
            if limit <= 0:
                return
            began = time.perf_counter()
            if not self._sync(claim=limit):
                self.ahead_found_none = True
            self.claim_seconds = time.perf_counter() - began
        except Exception:  # the claim at the end of the batch tries again
            logger.exception("could not claim the next jobs ahead; trying again later")
        finally:
            self.claim_lock.release()

    def _claim_size(self) -> int:
        """How many jobs the next claim asks for (with state_lock held): about batch_aim of
        work, and at least four times the claim's own cost (a claim that must read the whole
        file is dearer); within the run's bounds, counting the jobs claimed not started."""
        since, self.last_claim = self.last_claim, time.perf_counter()
        working = self.last_claim - since - self.claim_seconds
        per_job = max(working, 0.0) / max(self.started - self.started_at_claim, 1)
        self.started_at_claim = self.started
        if since:
            wanted = max(self.batch_aim, CLAIM_SHARE * self.claim_seconds)
            self.batch = max(1, min(MAX_BATCH, self.batch * 8, int(wanted / max(per_job, 1e-6))))
            # Twice the jobs started while a claim takes, and one per thread.
            self.ahead_mark = self.options.concurrency + min(
                self.batch, math.ceil(2 * self.claim_seconds / max(per_job, 1e-6)))
        return self.bounds.room(self.started + len(self.to_run), self.batch)

    def _must_stop(self) -> bool:
        """Whether to start no other job: stopped, or the bounds reached (counting the jobs
        started, which may still be running in other threads)."""
        return self.stop.is_set() or self.bounds.reached(self.started)

    def _run_one(self, held: Held) -> None:
        """One job's life in the worker, from its handler's call to its next version (see
        model/transitions.py), recorded for the next exchange; hooks told of each step."""
        job = held.original
        handler = self.options.handlers.get(job.type)
        limit = held.timeout or self.options.timeout
        logger.debug("job %s %s started (attempt %d of %d)", job.id, job.type, held.attempt,
                     held.max_attempts)
        payload = None
        started = time.perf_counter()
        try:
            if handler is None:
                raise LookupError(f"no handler for job type {job.type!r}; add one to the handlers "
                                  f"given to process_jobs")
            payload = json.loads(job.payload)
            with running(RunningJob(job.id, job.type, job.created_at, held.attempt,
                                    held.max_attempts, held.queue, held.priority), self.control):
                self.storage.started(job.id)  # from here on, a death counts the attempt
                if hooks.registered:
                    hooks.call(self._event("on_start", held, payload))
                started = time.perf_counter()
                # The stop's interruption wraps the handler alone, inside the time limit's
                # machinery, so it can land nowhere else (see control.py).
                result = call_with_time_limit(self.control.stoppable(job.id, held.attempt, handler),
                                              payload, limit, self.watchdog)
        except JobStopped as error:
            if not self._stopped(held, payload):
                self._ended_badly(held, payload, error, limit, started)
        except BaseException as error:
            if self.control.asked and self._stopped(held, payload):
                if isinstance(error, KeyboardInterrupt):
                    raise
            else:
                self._ended_badly(held, payload, error, limit, started)
        else:
            if not (self.control.asked and self._stopped(held, payload, result)):
                self._completed(held, payload, result, started)
        finally:
            if self.control.asked or self.control.progress:
                self.control.forget(job.id)

    def _stopped(self, held: Held, payload, result=None) -> bool:
        """Record the job as stopped, if someone asked it to (see control.py); whether so."""
        job = held.original
        by = self.control.stopped_by(job.id)
        if by is None:
            return False
        stopped = transitions.stopped(job, self.queue.clock(), by,
                                      result_json(result, job.id, job.type))
        self._record(held, stopped)
        logger.warning("job %s %s stopped, as %s asked", job.id, job.type, by)
        if hooks.registered:  # an end without success, for good: as a last failure
            hooks.call(self._event("on_failure", held, payload, error=stopped.error,
                                   exception=JobStopped(stopped.error), final=True,
                                   duration=0.0))
        return True

    def _ended_badly(self, held: Held, payload, error: BaseException, limit,
                     started: float) -> None:
        """A handler that raised: Retry, a time limit, a failure, or an exit."""
        job = held.original
        if isinstance(error, Retry):  # asked for, not a failure: the attempt is not counted
            run_at = error.run_at(self.queue.clock())
            self._record(held, transitions.reschedule(job, run_at))
            logger.info("job %s %s will run again at %s, as it asked (%s)", job.id, job.type,
                        utc(run_at), error)
            if hooks.registered:
                hooks.call(self._event("on_retry", held, payload, run_at=run_at,
                                       duration=time.perf_counter() - started))
            return
        # SystemExit (a handler calling sys.exit), KeyboardInterrupt, GeneratorExit: a
        # failed attempt like any other, so a handler that exits cannot loop forever.
        text = f"timed out after {limit:g} s" if isinstance(error, JobTimeout) else error_text(error)
        self._failed(held, payload, text, error, started)
        if isinstance(error, KeyboardInterrupt):
            raise error

    def _completed(self, held: Held, payload, result, started: float) -> None:
        job = held.original
        duration = time.perf_counter() - started
        self._record(held, transitions.complete(job, held.claimed_at,
                                                result_json(result, job.id, job.type)))
        logger.debug("job %s %s completed in %.1f ms", job.id, job.type, duration * 1000)
        if hooks.registered:
            hooks.call(self._event("on_success", held, payload, result=result,
                                   duration=duration))

    def _failed(self, held: Held, payload, text: str, error: BaseException,
                started: float) -> None:
        """A failed attempt: recorded (failed for good, or pending at its retry time), then
        told to the hooks."""
        duration = time.perf_counter() - started
        final = self._failure(held, text, error)
        self._record(held, final)
        if hooks.registered:
            last = final.status == FAILED
            hooks.call(self._event("on_failure", held, payload, error=text, exception=error,
                                   final=last, duration=duration))
            if not last:
                hooks.call(self._event("on_retry", held, payload, error=text, exception=error,
                                       run_at=final.run_at, duration=duration))

    @staticmethod
    def _event(step: str, held: Held, payload, **details) -> hooks.JobEvent:
        job = held.original
        return hooks.JobEvent(step, job.id, job.type, held.queue, held.priority, held.attempt,
                              held.max_attempts, payload, **details)

    def _failure(self, held: Held, text: str, error: BaseException) -> Job:
        try:
            self.queue.traceback_files.add(held.original.id, held.attempt, self.queue.clock(),
                                           text, error)
        except Exception:  # a full disk: the attempt is still recorded, without its traceback
            logger.warning("job %s: could not keep the traceback of attempt %d", held.original.id,
                           held.attempt, exc_info=True)
        job = transitions.fail(held.original, text, self.queue.clock(), held.claimed_at,
                               held.max_attempts, random=self.queue.random)
        if job.status == FAILED:
            logger.error("job %s %s failed for good after %s: %s", job.id, job.type,
                         plural(held.attempt, "attempt"), text)
        else:
            logger.warning("job %s %s failed (attempt %d of %d): %s; next try at %s", job.id,
                           job.type, held.attempt, held.max_attempts, text, utc(job.run_at))
        return job

    def _record(self, held: Held, final: Job) -> None:
        with self.state_lock:
            if final.status != PENDING:
                outcome = final.status
            elif final.attempts == held.attempt:
                outcome = "to retry"
            else:
                outcome = "rescheduled"  # by Retry: the attempt was not counted
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            # The registry counts completed, failed (a stopped job too: it ended without
            # success) and retried jobs.
            self.record.count(outcome if outcome in ("completed", "failed") else
                              "failed" if outcome == CANCELLED else "retried", self.queue.clock())
            self.finished[held.original.id.encode()] = final.to_line()
            self.storage.release_slots((held.original.id.encode(),))  # its handler is done
            if self.oldest_unwritten is None:
                self.oldest_unwritten = self.queue.monotonic()

    def report(self) -> None:
        """Write this worker's line in the registry (storage/workers.py) and its counts by
        minute (storage/throughput.py); a failure to is logged, and changes nothing else."""
        self.last_report = self.queue.monotonic()
        with self.state_lock:
            in_hand = len(self.held)
            minutes = self.record.take_minutes()
        self.storage.report(self.record, in_hand, minutes)

    def _keep(self) -> None:
        while not self.stopping.wait(KEEPER_TICK_SECONDS):
            try:
                self.control.tick()  # stop requests, and progress to write
            except Exception:
                logger.exception("could not read stop requests or write progress; trying again")
            if self.firing is not None and self.firing.due(self.queue.clock()):
                self.firing.fire()  # a slot falling due while handlers run
            if self.queue.monotonic() - self.last_report >= HEARTBEAT_SECONDS:
                self.report()  # a long run's heartbeat
            renew_before = self.queue.clock() + self.options.lease_seconds / 2
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
        ``release``) put held jobs that never started back: one exchange with the storage.
        Returns the ids claimed. Unless ``full``, it starts where the last one left off
        (see RunStorage.exchange)."""
        with self.sync_lock:
            with self.state_lock:
                held, finished = dict(self.held), dict(self.finished)
                unstarted = set(self.to_run) if release else set()
            if not claim and not held:
                return []
            exchange = self.storage.exchange(held, finished, unstarted, claim, full,
                                             apply=lambda done: self._apply(done, claim, release))
            return [] if exchange is None else exchange.order

    def _apply(self, exchange: Exchange, claim: int, release: bool) -> None:
        """What an exchange wrote, applied to the jobs the run holds."""
        with self.state_lock:
            for job_id in exchange.settled:
                self.held.pop(job_id, None)
                self.finished.pop(job_id, None)
            for job_id in exchange.renewed:
                held = exchange.adopted.get(job_id) or self.held[job_id]
                self.held[job_id] = held.renewed(exchange.lease_until)
            self.held.update(exchange.claimed)
            self.to_run.extend(exchange.order)
            if release:
                self.storage.release_slots(self.to_run)
                self.to_run.clear()
            elif claim and not self.held.keys() - set(self.to_run):
                # Every job started so far has its final state on disk (or was taken
                # by another worker); any job popped from to_run later is recorded later.
                self.storage.forget_started()
            if not self.finished:
                self.oldest_unwritten = None


def utc(timestamp: float) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM:SS UTC``, for logs."""
    return utc_text(timestamp) + " UTC"
