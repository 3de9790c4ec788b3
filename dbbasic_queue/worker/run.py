"""One run of the TSV queue's worker (``process_jobs``): claim, run, record, until no job is due.

A run claims due jobs in batches (one atomic rewrite marks them ``processing`` with a lease and
this run's token), runs them (one at a time, or ``concurrency`` at once in threads), and
records their results in batches at most about a second old. A keeper thread renews its
leases while handlers run, and the run holds a liveness lock (see ``storage/liveness.py``), so no other
worker takes its jobs while it lives; it records there each job it starts, so that if it dies
only those count an attempt. The wall clock, a monotonic clock and randomness come from the
queue, so tests move time by hand.
"""

import json
import logging
import math
import threading
import time
from collections import deque
from typing import Dict, List, Optional, Set

from ..model import transitions
from ..storage.choosing import look, take_remembered
from ..storage.claim import ClaimEditor, Held
from ..model.words import plural
from ..model.job import Job, error_text, peek_status_and_run_at, utc_text
from ..model.job import result_json
from ..storage.liveness import RunLock, WorkerLocks, new_token
from ..storage.rates import Rates
from ..storage.slots import Slot, Slots
from ..model.options import Retry, schedules_of
from ..periodic.firing import Firing
from .running import RunningJob, running
from .timelimit import JobTimeout, Watchdog, call_with_time_limit
from .settings import Bounds, WorkerOptions

logger = logging.getLogger("dbbasic_queue")

RESULT_WINDOW_SECONDS = 1.0  # a finished job's result reaches the file within about this long
KEEPER_TICK_SECONDS = 0.2
BATCH_SECONDS = 0.5  # aim for batches of about this much work
FIRST_BATCH, MAX_BATCH = 8, 4000  # a held job costs about 2.5 KB of peak memory
CLAIM_SHARE = 4  # a batch holds at least this many times its claim's cost in work
STALE_TEMPORARY_SECONDS = 3600


class WorkerRun:
    """One call of process_jobs. ``next_due`` is, after the run, the earliest run_at of a job
    that was not due yet, and ``next_slot`` when a periodic job may next fall due (for the
    loop worker's sleep). A run given handlers with schedules fires their due slots first,
    and again from its keeper thread while it runs."""

    def __init__(self, queue, options: WorkerOptions, bounds: Bounds,
                 stop: Optional[threading.Event] = None) -> None:
        self.queue = queue
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
        self.next_due: Optional[int] = None
        self.held: Dict[bytes, Held] = {}
        self.to_run: deque = deque()  # ids of held jobs not started yet, in claim order
        self.finished: Dict[bytes, bytes] = {}  # final lines waiting to be written
        self.recorded: Set[bytes] = set()  # final lines the last rewrite wrote (see ClaimEditor)
        self.oldest_unwritten: Optional[float] = None  # monotonic time of the oldest of them
        self.reported: set = set()  # corrupt lines already logged in this run
        self.state_lock = threading.Lock()  # guards held, to_run, finished, ran
        self.sync_lock = threading.Lock()  # one rewrite at a time
        self.stopping = threading.Event()
        self.bookmark = None  # where the next rewrite may resume (see storage.Bookmark)
        self.last_sync_resumed = False
        self.locks = WorkerLocks(queue.path)
        self.slots = Slots(queue.path)
        self.rates = Rates(queue.path)
        self.slot_of: Dict[bytes, Slot] = {}  # the concurrency slot each held job took
        self.token = new_token()
        self.liveness: Optional[RunLock] = None  # held while the run serves
        self.watchdog: Optional[Watchdog] = None
        self.outcomes: Dict[str, int] = {}  # completed, failed, to retry, rescheduled: counts
        self.ranked = False  # jobs it may take differ in rank: claims choose first
        self.ahead_found_none = False  # a claim ahead of the batch's end found no job
        self.ahead_mark = options.concurrency  # claim ahead below this many jobs left to start
        self.remembered = None  # of the last look, for the next ranked claim (see choosing.py)
        self.passed_over: set = set()  # paused queues and types, and missing handlers, logged
        schedules = schedules_of(options.handlers)
        self.firing = Firing(queue, schedules) if schedules else None

    @property
    def next_slot(self) -> Optional[float]:
        return None if self.firing is None else self.firing.next_due

    def run(self) -> int:
        if self.firing is not None:
            self.firing.fire()  # before the due jobs are claimed, so a due slot's job runs now
        now = time.time()
        self.queue.table.remove_stale_temporary_files(older_than=STALE_TEMPORARY_SECONDS, now=now)
        self.locks.remove_dead(now)
        self.slots.remove_stale(now)
        self.rates.remove_stale(now)
        if self.options.retention_seconds is not None:
            drop_before = self.queue.clock() - self.options.retention_seconds
            self.queue.archive.remove_expired(drop_before)
            self.queue.traceback_files.remove_expired(drop_before)
        try:
            self.liveness = self.locks.hold(self.token)
        except FileNotFoundError:
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
                self._release_slots(list(self.slot_of))
                self.liveness.release()
                if self.bookmark is not None:
                    self.bookmark.close()
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
                        self.last_sync_resumed and self._sync(claim=limit, full=True)):
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
        job = held.original
        handler = self.options.handlers.get(job.type)
        limit = held.timeout or self.options.timeout
        logger.debug("job %s %s started (attempt %d of %d)", job.id, job.type, held.attempt,
                     held.max_attempts)
        started = time.perf_counter()
        try:
            if handler is None:
                raise LookupError(f"no handler for job type {job.type!r}; add one to the handlers "
                                  f"given to process_jobs")
            with running(RunningJob(job.id, job.type, job.created_at, held.attempt,
                                    held.max_attempts, held.queue, held.priority)):
                self.liveness.started(job.id)  # from here on, a death counts the attempt
                result = call_with_time_limit(handler, json.loads(job.payload), limit,
                                              self.watchdog)
        except Retry as retry:  # asked for, not a failure: the attempt is not counted
            run_at = retry.run_at(self.queue.clock())
            self._record(held, transitions.reschedule(job, run_at))
            logger.info("job %s %s will run again at %s, as it asked (%s)", job.id, job.type,
                        utc(run_at), retry)
        except JobTimeout as error:
            self._record(held, self._failure(held, f"timed out after {limit:g} s", error))
        except Exception as error:
            self._record(held, self._failure(held, error_text(error), error))
        except BaseException as error:
            # SystemExit (a handler calling sys.exit), KeyboardInterrupt, GeneratorExit: a
            # failed attempt like any other, so a handler that exits cannot loop forever.
            self._record(held, self._failure(held, error_text(error), error))
            if isinstance(error, KeyboardInterrupt):
                raise
        else:
            self._record(held, transitions.complete(job, held.claimed_at,
                                                    result_json(result, job.id, job.type)))
            logger.debug("job %s %s completed in %.1f ms", job.id, job.type,
                         (time.perf_counter() - started) * 1000)

    def _failure(self, held: Held, text: str, error: BaseException) -> Job:
        try:
            self.queue.traceback_files.add(held.original.id, held.attempt, self.queue.clock(),
                                           text, error)
        except Exception:  # a full disk: the attempt is still recorded, without its traceback
            logger.warning("job %s: could not keep the traceback of attempt %d", held.original.id,
                           held.attempt, exc_info=True)
        job = transitions.fail(held.original, text, self.queue.clock(), held.claimed_at,
                               held.max_attempts, random=self.queue.random)
        if job.status == "failed":
            logger.error("job %s %s failed for good after %s: %s", job.id, job.type,
                         plural(held.attempt, "attempt"), text)
        else:
            logger.warning("job %s %s failed (attempt %d of %d): %s; next try at %s", job.id,
                           job.type, held.attempt, held.max_attempts, text, utc(job.run_at))
        return job

    def _record(self, held: Held, final: Job) -> None:
        with self.state_lock:
            if final.status != "pending":
                outcome = final.status
            elif final.attempts == held.attempt:
                outcome = "to retry"
            else:
                outcome = "rescheduled"  # by Retry: the attempt was not counted
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            self.finished[held.original.id.encode()] = final.to_line()
            self._release_slots((held.original.id.encode(),))  # its handler is done
            if self.oldest_unwritten is None:
                self.oldest_unwritten = self.queue.monotonic()

    def _keep(self) -> None:
        while not self.stopping.wait(KEEPER_TICK_SECONDS):
            if self.firing is not None and self.firing.due(self.queue.clock()):
                self.firing.fire()  # a slot falling due while handlers run
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
            retention = self.options.retention_seconds
            drop_before = None if retention is None else now - retention
            resume = None if full else self.bookmark
            archive_after = self.queue.archive_after
            archive_before = None if archive_after is None else now - archive_after
            scope = self.options.scope.paused(*self.queue.pauses.current())
            # Held jobs spread over the file by rank: a rewrite that claims nothing sees only
            # the run's own lines (held jobs, and final lines to move).
            remembered, chosen, thorough = self.remembered, None, not self.ranked
            if claim:
                choice = self._choose(claim, held, resume, full, scope, now, archive_before,
                                      drop_before)
                if choice is None:
                    return []
                chosen, remembered, thorough = choice
            if chosen is not None:
                resume = None  # they may lie before the bookmark
            picked = set(chosen) if chosen is not None else None if thorough else set()
            edit = self.queue.table.rewrite(lambda: ClaimEditor(
                held, finished, unstarted, now, now + self.options.lease_seconds, claim,
                self.options.max_attempts, drop_before, worker=self.token,
                owner=self.locks.owner,
                archive_before=archive_before,
                spool=None if archive_after is None else self.queue.archive.spool(),
                scope=scope, chosen=picked,
                slots=self.slots, limits=self.options.limits, rates=self.rates,
                rate_limits=self.options.rate_limits, recorded=self.recorded,
                thorough=thorough), resume)
            self.last_sync_resumed = resume is not None or not thorough
            if edit is None:
                return []
            outcome = edit.outcome
            if remembered is not None and (outcome.claimed if claim else self.remembered):
                self.remembered = self._remember(remembered, edit, finished)
            if edit.changed:
                self.recorded = outcome.recorded
            self.ranked = self.ranked or outcome.ranked
            if claim and len(outcome.claimed) < claim and resume is None:
                self.next_due = outcome.next_due  # it looked at every line
            claimed = list(outcome.claimed)
            if chosen is None and outcome.ranked:  # claimed in file order: run by rank
                claimed.sort(key=lambda job_id: outcome.ranks.get(job_id, ()))
            elif chosen is not None:  # in the order chosen
                claimed = [job_id for job_id in chosen if job_id in outcome.claimed] + [
                    job_id for job_id in claimed if job_id not in picked]
            with self.state_lock:
                self.slot_of.update(outcome.slots)
                self._release_slots(outcome.settled)
                for job_id in outcome.settled:
                    self.held.pop(job_id, None)
                    self.finished.pop(job_id, None)
                for job_id in outcome.renewed:
                    self.held[job_id] = self.held[job_id].renewed(edit.lease_until)
                self.held.update(outcome.claimed)
                self.to_run.extend(claimed)
                if release:
                    self._release_slots(self.to_run)
                    self.to_run.clear()
                elif claim and not self.held.keys() - set(self.to_run):
                    # Every job started so far has its final state on disk (or was taken
                    # by another worker); any job popped from to_run later is recorded later.
                    self.liveness.forget_started()
                if not self.finished:
                    self.oldest_unwritten = None
            if edit.bookmark is not None or edit.changed:
                # After the jobs claimed are known (a Ctrl-C from here on lets the run put them
                # back), and swapped before the close: a Ctrl-C right after the close must not
                # leave a closed (maybe reused) descriptor for the run's last rewrite to use.
                old, self.bookmark = self.bookmark, edit.bookmark
                if old is not None:
                    old.close()
            outcome.dropped, outcome.archived = edit.dropped, edit.archived
            outcome.log(self.queue.path, edit.changed, self.options.retention_seconds, self.reported)
            self._log_passed_over(outcome)
            return claimed

    def _choose(self, claim: int, held, resume, full: bool, scope, now: float,
                archive_before: Optional[float], drop_before: Optional[float]):
        """Which jobs a claim of at most ``claim`` takes, decided before its rewrite:
        (chosen, remembered, thorough). ``chosen`` None claims in file order; ``thorough``
        False lets the rewrite show the editor only the run's own lines and the chosen ones
        (see storage/choosing.py). None if a look at the whole file found nothing to claim,
        mark, move or drop (``next_due`` is then set)."""
        remembered, self.remembered = self.remembered, None  # a claim keeps its own, or none
        ranked = self.ranked or scope.weights
        if (ranked and not full and remembered is not None and remembered.usable(scope, now)
                and self.queue.table.holds(self.bookmark)):
            chosen = take_remembered(remembered, self.queue.table, now, claim, self.queue.random)
            if chosen is not None:
                return chosen, remembered, False
        if (held or resume is not None) and not ranked:
            return None, None, True  # the resumed rewrite claims in file order
        seen = look(self.queue.table.lines(), now, scope, claim, archive_before, drop_before)
        if not seen.worth and not held:
            self.next_due = seen.next_due
            return None
        if seen.remembered is None:
            return None, None, True
        self.ranked = True
        return (seen.remembered.candidates.take(claim, self.queue.random, fresh=True),
                seen.remembered, True)

    def _remember(self, remembered, edit, finished: Dict[bytes, bytes]):
        """What the run remembers for its next ranked claim after its rewrite ``edit``:
        None if the file is no longer one it can vouch for."""
        if edit.changed:
            if edit.bookmark is None:
                return None
            remembered.rewritten(edit.dropped + edit.archived)
        later = [edit.outcome.next_due] + [  # a job put off by a limit, a retry of its own
            peek[1] for peek in map(peek_status_and_run_at, finished.values())
            if peek is not None and peek[0] == b"pending"]
        for run_at in later:
            if run_at is not None and run_at > edit.now:  # jobs due now are candidates already
                remembered.due_at(run_at)
        return remembered

    def _release_slots(self, job_ids) -> None:
        for job_id in job_ids:
            slot = self.slot_of.pop(job_id, None)
            if slot is not None:
                slot.release()

    def _log_passed_over(self, outcome) -> None:
        """Once per run and name: the due jobs it left to others (no handler here) or
        skipped (paused)."""
        for job_type, count in outcome.waiting.items():
            if ("type", job_type) not in self.passed_over:
                self.passed_over.add(("type", job_type))
                logger.info("left %s to another worker: no handler here for %r",
                            plural(count, f"due {job_type} job"), job_type)
        for key, count in outcome.limited.items():
            if ("key", key) not in self.passed_over:
                self.passed_over.add(("key", key))
                logger.debug("left %s: as many jobs of concurrency key %r run as its limit "
                             "allows", plural(count, "due job"), key)
        for key, count in outcome.rated.items():
            if ("rate", key) not in self.passed_over:
                self.passed_over.add(("rate", key))
                logger.info("put off %s: %s started as many jobs as its rate limit allows",
                            plural(count, "due job"), key)
        for what, count in outcome.paused.items():
            if what not in self.passed_over:
                self.passed_over.add(what)
                logger.info("skipping %s: %s is paused", plural(count, "due job"), what)

def utc(timestamp: float) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM:SS UTC``, for logs."""
    return utc_text(timestamp) + " UTC"
