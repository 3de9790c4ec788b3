"""The worker of the RQ backend: RQ's in-process worker, running only jobs of ours.

Every job of ours names one function, ``dispatch``, which looks the handler up by job type
in the handlers given to this worker. The worker reads jobs with JSON, hands ``dispatch`` to
a job only once ``rq_jobs.refusal`` found it ours, and fails any other job for good without
importing or running anything it names. It honours the options of the TSV worker that RQ
can (``timeout``, ``max_jobs``, ``max_seconds``) and refuses the others by name.
"""

import json
import logging
import math
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from rq import SimpleWorker, get_current_job
from redis.exceptions import WatchError
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.scheduler import RQScheduler
from rq.timeouts import JobTimeoutException

from .. import hooks
from ..backend import (DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS, DEFAULT_RETENTION_SECONDS,
                       DEFAULT_STOP_GRACE)
from ..model.checks import check_handlers, check_number
from ..errors import UnsupportedError
from ..model.job import error_text
from ..model.job import result_json
from ..model.queues import DEFAULT_QUEUE, Scope
from ..model.words import plural
from . import links
from .jobs import OUR_WORKER, SERIALIZER, SafeJob, died_message, foreign_message, refusal
from .stops import Keeper, RedisStops
from .unique import UniqueKeys
from .queues import Pair, QueueMap, claim_order
from ..storage.notes import checked_progress
from ..worker.control import PROGRESS_SECONDS, JobControl, JobStopped
from ..worker.running import RunningJob, running
from ..storage.tracebacks import class_path, format_traceback
from ..worker.settings import Bounds

logger = logging.getLogger("dbbasic_queue")

KEPT_TRACEBACKS = 10  # of a job's last failed attempts, in its meta
LOOK_SECONDS = 1  # how often a worker looks for new queues, pauses and due scheduled jobs
SWEEP_SECONDS = 60  # how often a loop worker settles the deferred jobs (see links.sweep)
ENDED = frozenset({"finished", "failed", "stopped", "canceled"})


class MetaProgress:
    """current_job()'s progress on RQ: kept in the job's meta (``progress``), saved at most
    every PROGRESS_SECONDS, so a handler may report as often as it likes. Who asked it to
    stop is the worker's JobControl's (see rq/stops.py)."""

    def __init__(self, job, control: Optional[JobControl] = None) -> None:
        self.job, self.control, self.saved_at = job, control, -math.inf

    def report(self, job_id: str, done, note: str = "") -> None:
        progress = checked_progress(done, note, time.time())
        self.job.meta["progress"] = progress._asdict()
        if time.monotonic() - self.saved_at >= PROGRESS_SECONDS:
            self.saved_at = time.monotonic()
            try:
                self.job.save_meta()
            except Exception:  # Redis out of reach a moment: the job runs on all the same
                logger.warning("job %s: could not save its progress", job_id, exc_info=True)

    def stopped_by(self, job_id: str) -> Optional[str]:
        return None if self.control is None else self.control.stopped_by(job_id)


def dispatch(job_type: str, payload_json: str) -> Any:
    """What runs for every job of ours: the worker's handler for ``job_type``, with the
    payload. It keeps the attempts, the start, the error and the tracebacks of failed
    attempts in the job's meta, for get_job and tracebacks, and sets ``current_job()``."""
    job = get_current_job()
    meta = job.meta
    if getattr(job, "handlers", None) is None:  # a plain RQ worker: it has no handlers
        meta["error"] = f"taken by a worker that has no handlers: {OUR_WORKER}"
        job.save_meta()
        raise RuntimeError(f"job {job.id} {job_type}: {meta['error']}")
    meta["attempts"] = attempt = meta.get("attempts", 0) + 1
    meta["started_at"] = int(time.time())
    job.save_meta()
    logger.debug("job %s %s started (attempt %d)", job.id, job_type, attempt)
    this = RunningJob(job.id, job_type, meta.get("created_at", 0), attempt,
                      meta.get("max_attempts", DEFAULT_MAX_ATTEMPTS),
                      meta.get("queue", DEFAULT_QUEUE), meta.get("priority", 0))
    payload = stopped_by = None
    control: Optional[JobControl] = getattr(job, "control", None)
    started = time.perf_counter()
    try:
        handler = job.handlers.get(job_type)
        if handler is None:
            raise LookupError(f"no handler for job type {job_type!r}; add one to the handlers "
                              f"given to process_jobs")
        payload = json.loads(payload_json)
        with running(this, MetaProgress(job, control)):
            if hooks.registered:
                hooks.call(event("on_start", this, payload))
            started = time.perf_counter()
            if control is None:
                result = handler(payload)
            else:
                try:
                    result = control.stoppable(job.id, attempt, handler)(payload)
                finally:
                    stopped_by = control.stopped_by(job.id)
                    control.forget(job.id)
                if stopped_by is not None:  # it returned once asked: stopped all the same
                    raise JobStopped(f"stopped by {stopped_by}")
    except (Exception, JobStopped) as error:
        timed_out = isinstance(error, JobTimeoutException)
        if stopped_by is not None or isinstance(error, JobStopped):
            meta["stopped_by"] = stopped_by or "someone"
            job.retries_left = None  # a stop is an end: never retried
        meta["error"] = (f"Stopped by {meta['stopped_by']}" if "stopped_by" in meta else
                         f"timed out after {job.timeout} s" if timed_out else error_text(error))
        kept = [entry for entry in meta.get("tracebacks", []) if isinstance(entry, dict)]
        meta["tracebacks"] = (kept + [{
            "attempt": attempt, "failed_at": int(time.time()), "error": meta["error"],
            "exception": class_path(error), "traceback": format_traceback(error)}])[-KEPT_TRACEBACKS:]
        job.save_meta()
        logger.warning("job %s %s %s (attempt %d): %s", job.id, job_type,
                       "stopped" if "stopped_by" in meta else "failed", attempt, meta["error"])
        if hooks.registered:
            duration = time.perf_counter() - started
            again = bool(job.retries_left)  # RQ retries it after this raise
            hooks.call(event("on_failure", this, payload, error=meta["error"], exception=error,
                             final=not again, duration=duration))
            if again:
                hooks.call(event("on_retry", this, payload, error=meta["error"],
                                 exception=error, duration=duration,
                                 run_at=time.time() + job.get_retry_interval()))
        if isinstance(error, JobStopped):  # RQ fails it; the worker then cancels it
            raise StoppedOnRedis(meta["error"]) from None
        raise
    duration = time.perf_counter() - started
    logger.debug("job %s %s completed in %.1f ms", job.id, job_type, duration * 1000)
    text = result_json(result, job.id, job_type)
    if hooks.registered:
        hooks.call(event("on_success", this, payload, result=result, duration=duration))
    return None if not text else json.loads(text)


class StoppedOnRedis(Exception):
    """A job asked to stop has ended: RQ records it failed, then the worker cancels it."""


def event(step: str, job: RunningJob, payload, **details) -> hooks.JobEvent:
    return hooks.JobEvent(step, job.id, job.type, job.queue, job.priority, job.attempt,
                          job.max_attempts, payload, **details)


def refuse_options(where: str, lease_seconds, retention_seconds, concurrency: int = 1,
                   stop=None, handle_signals: bool = True, queues=None) -> None:
    """UnsupportedError for a TSV worker option RQ cannot honour (TypeError or ValueError for
    a bad ``queues``); the defaults pass."""
    if lease_seconds != DEFAULT_LEASE_SECONDS:
        refused, why = "lease_seconds", ("Redis has no leases: RQ fails the job of a dead worker "
                                         "once its heartbeat times out")
    elif retention_seconds != DEFAULT_RETENTION_SECONDS:
        refused, why = "retention_seconds", ("Redis keeps a result for the result_ttl set at "
                                             "enqueue (7 days)")
    elif concurrency != 1:
        refused, why = "concurrency", ("RQ's worker runs one job at a time: start more "
                                       "workers on Redis, processes on any machines")
    elif queues is not None and Scope.of(None, queues).weights is not None:
        refused, why = "queues with weights", ("RQ's worker on Redis takes from its queues in "
                                               "order, with no weighted draw; list them in the "
                                               "order to serve them")
    elif stop is not None or not handle_signals:
        refused, why = "stop and handle_signals", ("RQ's worker on Redis stops at SIGTERM or "
                                                   "SIGINT; bound it with max_jobs or max_seconds")
    else:
        return
    raise UnsupportedError(f"{refused} is not supported on the RQ backend ({where}): {why}")


class DispatchWorker(SimpleWorker):
    """RQ's worker for the queues of one RQQueue. Before each take it lists the RQ queues it
    serves, in claim order and less the paused ones (see rq/queues.py); once a second it looks
    for new ones and queues their due scheduled jobs, as RQ's scheduler would. ``ran`` counts
    the jobs whose handler it called."""

    def __init__(self, rq_queue_for: Callable[[Pair], Any], queue_map: QueueMap,
                 served: Optional[Sequence[str]], handlers: Mapping[str, Callable[[dict], Any]],
                 bounds: Bounds, timeout: Optional[float],
                 stop_grace: float = DEFAULT_STOP_GRACE) -> None:
        check_handlers(handlers)
        if timeout is not None:
            check_number("timeout", timeout)
        check_number("stop_grace", stop_grace)
        first = rq_queue_for((DEFAULT_QUEUE, 0))  # until the first look lists them all
        super().__init__([first], connection=first.connection, job_class=SafeJob,
                         serializer=SERIALIZER)
        self.handlers, self.bounds, self.timeout, self.ran = handlers, bounds, timeout, 0
        self.rq_queue_for, self.queue_map, self.served = rq_queue_for, queue_map, served
        self.pairs: List[Pair] = []
        self.next_look = 0.0
        self.mover: Optional[RQScheduler] = None  # not RQ's self.scheduler, which RQ would fork
        self.mover_names: List[str] = []
        self.skipped: frozenset = frozenset()
        self.next_sweep = 0.0
        self.unique_keys = UniqueKeys(first.connection, queue_map.base)
        self.stops = RedisStops(first.connection, queue_map.base)
        self.control = JobControl(self.stops, time.monotonic, time.time, stop_grace)
        self.stops.running = lambda: list(self.control.running)

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        # The bounds are checked before each job is taken: the job in hand always finishes.
        # A blocking wait is cut to a second, so that new queues and pauses are seen.
        while not self.bounds.reached(self.ran):
            listening = self.listening()
            if listening:
                self.queues = self._ordered_queues = listening
                if timeout is None:  # burst: take what is there, or stop
                    return super().dequeue_job_and_maintain_ttl(None, None)
                taken = super().dequeue_job_and_maintain_ttl(LOOK_SECONDS, LOOK_SECONDS)
                if taken is not None:
                    return taken
            elif timeout is None:
                return None
            else:  # every queue served is paused: wait for a resume
                self.heartbeat()
                time.sleep(LOOK_SECONDS)
        return None

    def listening(self) -> list:
        """The RQ queues to take from now, in order."""
        if time.monotonic() >= self.next_look:
            self.pairs = claim_order(self.queue_map.pairs(), self.served)
            self.queue_due_scheduled_jobs()
            self.next_look = time.monotonic() + LOOK_SECONDS
            if time.monotonic() >= self.next_sweep:
                links.sweep(self.rq_queue_for(pair) for pair in self.pairs)
                self.next_sweep = time.monotonic() + SWEEP_SECONDS
        paused = frozenset(self.queue_map.paused_queues())
        skipped = frozenset(name for name, _ in self.pairs) & paused
        if skipped != self.skipped and skipped:
            logger.info("skipping paused %s %s until resumed", plural(len(skipped), "queue"),
                        ", ".join(sorted(skipped)))
        self.skipped = skipped
        return [self.rq_queue_for(pair) for pair in self.pairs if pair[0] not in paused]

    def queue_due_scheduled_jobs(self) -> None:
        """Move the due jobs of the served queues' schedules to their lists, under RQ's own
        per-queue scheduler locks (a queue another scheduler holds is its to move)."""
        names = sorted(self.rq_queue_for(pair).name for pair in self.pairs)
        if self.mover is None or self.mover_names != names:
            self.mover = RQScheduler(names, connection=self.connection,
                                     serializer=SERIALIZER, logging_level="WARNING")
            self.mover_names = names
        if self.mover.acquire_locks():
            try:
                self.mover.enqueue_scheduled_jobs()
            finally:
                self.mover.release_locks()

    def perform_job(self, job, queue) -> bool:
        reason = refusal(job)
        if reason is None:
            if isinstance(job.meta.get("batch"), dict):  # a batch's on_complete job
                links.put_batch_counts(self.connection, job)
            job.run_by, job.handlers, job.control = dispatch, self.handlers, self.control
            if job.meta.get("timeout") is None and self.timeout is not None:
                job.timeout = math.ceil(self.timeout)  # the job's own timeout comes first
            self.ran += 1
            # alive, with the attempt dispatch is about to count, before RQ marks it started:
            # stop() asks only a live worker, and for the attempt it runs
            self.stops.beat({job.id: job.meta.get("attempts", 0) + 1})
        else:
            logger.error("%s", foreign_message(job.id, reason))
            job.retries_left = None  # failed for good: never retried
        try:
            done = super().perform_job(job, queue)
        finally:
            if reason is None:
                self.stops.gone(job.id)
        if reason is None:
            status = job.get_status(refresh=False)
            status = getattr(status, "value", status)
            outcome = {"finished": "completed", "failed": "failed", "stopped": "failed"}.get(
                status, "to retry")  # a stopped job counts as failed, as on the file
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            if status in ENDED:
                self.ended(job)
        return done

    def ended(self, job) -> None:
        """A job of ours has ended: a stopped one is cancelled; its unique key is freed, and
        the jobs waiting for it told (RQ has queued those whose dependencies all completed;
        see links.py for the rest)."""
        stopped = job.meta.get("stopped_by") is not None
        self.unique_keys.release(job.meta.get("unique_key"), job.id)
        self.stops.forget(job.id)  # a request that came too late is for an attempt now over
        links.tell(self.connection, links.dependents_of(self.connection, job.id),
                   {job.id: "canceled"} if stopped else {})
        if stopped:  # after its dependents: once it reads cancelled, so do they
            try:
                job.cancel()
            except InvalidJobOperation:  # cancelled already
                pass

    def clean_registries(self) -> None:
        """RQ's cleanup of its registries, for every RQ queue this worker serves, paused ones
        too (RQ's own covers only ``self.queues``: here, at start, the default queue alone).
        It fails the jobs of dead workers (RQ's AbandonedJobError; one with retries left is
        retried instead); each of ours so failed is then ended as ours end: its error says
        its worker died and how to run it again, its unique key is freed, and the jobs
        waiting for it are told."""
        served = [self.rq_queue_for(pair)
                  for pair in claim_order(self.queue_map.pairs(), self.served)]
        abandoned = [job_id for rq_queue in served  # read before RQ's cleanup moves them
                     for job_id in rq_queue.started_job_registry.get_expired_job_ids()]
        kept, self.queues = self.queues, served
        try:
            super().clean_registries()
        finally:
            self.queues = kept
        for job_id in abandoned:
            try:
                self.abandoned(job_id)
            except Exception:  # one odd job must not keep the worker from its work
                logger.warning("job %s: could not end it after its worker died", job_id,
                               exc_info=True)

    def abandoned(self, job_id: str) -> None:
        """A job of ours that RQ's cleanup failed for good, its worker dead: say so in its
        error (under a WATCH, so a retry meanwhile is not overwritten), then end it."""
        key = SafeJob.key_for(job_id)
        with self.connection.pipeline() as pipe:
            try:
                pipe.watch(key)
                job = SafeJob.fetch(job_id, connection=self.connection, serializer=SERIALIZER)
                if refusal(job) is not None or job.get_status(refresh=False) != "failed":
                    return  # not ours, or retried (RQ's retry, or ours) meanwhile
                job.meta["error"] = died_message(job_id, job.meta.get("attempts"))
                pipe.multi()
                pipe.hset(key, "meta", SERIALIZER.dumps(job.meta))
                pipe.execute()
            except (NoSuchJobError, WatchError):
                return  # deleted or retried meanwhile: its own verb ended it
        logger.warning("job %s: %s", job_id, job.meta["error"])
        self.ended(job)

    def kill_horse(self, sig=None) -> None:
        """RQ's stop command (``send_stop_job_command``) for the job in hand: asked to stop as
        ``RQQueue.stop`` asks. RQ's in-process worker has no horse, and would kill its own
        process group."""
        job_id = self.get_current_job_id()
        job = self.get_current_job()
        if job_id is not None and job is not None:
            logger.info("job %s: RQ's stop command received; asking it to stop", job_id)
            self.stops.ask(job_id, job.meta.get("attempts", 0), "RQ's stop command")

    def handle_exception(self, job, *exc_info) -> None:
        """Nothing: dispatch logged the failure in one line and kept its traceback in the
        job's meta (``tracebacks``, ``show``), as the TSV worker does; RQ's own ERROR, with
        the whole traceback, would say it again."""

    def run(self, burst: bool) -> int:
        """Work (until no job is due, with ``burst``); returns how many jobs ran, and logs
        one summary line, as the TSV worker does."""
        self.outcomes: Dict[str, int] = {}
        began = time.perf_counter()
        with Keeper(self.control, self.stops):
            self.work(burst=burst, with_scheduler=False, logging_level="WARNING")
        if self.ran:
            logger.info("ran %s in %.2f s: %s", plural(self.ran, "job"),
                        time.perf_counter() - began,
                        ", ".join(f"{count} {what}" for what, count in
                                  sorted(self.outcomes.items())))
        else:
            logger.debug("ran 0 jobs in %.2f s", time.perf_counter() - began)
        return self.ran
