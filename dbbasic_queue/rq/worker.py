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
from typing import Any, Callable, Mapping, Optional

from rq import SimpleWorker, get_current_job
from rq.timeouts import JobTimeoutException

from ..backend import DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS, DEFAULT_RETENTION_SECONDS
from ..model.checks import check_handlers, check_number
from ..errors import UnsupportedError
from ..model.job import error_text
from ..model.job import result_json
from .jobs import SERIALIZER, SafeJob, foreign_message, refusal
from ..worker.running import RunningJob, running
from ..storage.tracebacks import class_path, format_traceback
from ..worker.settings import Bounds

logger = logging.getLogger("dbbasic_queue")

KEPT_TRACEBACKS = 10  # of a job's last failed attempts, in its meta


def dispatch(job_type: str, payload_json: str) -> Any:
    """What runs for every job of ours: the worker's handler for ``job_type``, with the
    payload. It keeps the attempts, the start, the error and the tracebacks of failed
    attempts in the job's meta, for get_job and tracebacks, and sets ``current_job()``."""
    job = get_current_job()
    meta = job.meta
    meta["attempts"] = attempt = meta.get("attempts", 0) + 1
    meta["started_at"] = int(time.time())
    job.save_meta()
    logger.debug("job %s %s started (attempt %d)", job.id, job_type, attempt)
    started = time.perf_counter()
    try:
        handler = job.handlers.get(job_type)
        if handler is None:
            raise LookupError(f"no handler for job type {job_type!r}; add one to the handlers "
                              f"given to process_jobs")
        this = RunningJob(job.id, job_type, meta.get("created_at", 0), attempt,
                          meta.get("max_attempts", DEFAULT_MAX_ATTEMPTS))
        with running(this):
            result = handler(json.loads(payload_json))
    except Exception as error:
        timed_out = isinstance(error, JobTimeoutException)
        meta["error"] = f"timed out after {job.timeout} s" if timed_out else error_text(error)
        kept = [entry for entry in meta.get("tracebacks", []) if isinstance(entry, dict)]
        meta["tracebacks"] = (kept + [{
            "attempt": attempt, "failed_at": int(time.time()), "error": meta["error"],
            "exception": class_path(error), "traceback": format_traceback(error)}])[-KEPT_TRACEBACKS:]
        job.save_meta()
        logger.warning("job %s %s failed (attempt %d): %s", job.id, job_type, attempt,
                       meta["error"])
        raise
    logger.debug("job %s %s completed in %.1f ms", job.id, job_type,
                 (time.perf_counter() - started) * 1000)
    text = result_json(result, job.id, job_type)
    return None if not text else json.loads(text)


def refuse_options(where: str, lease_seconds, retention_seconds, concurrency: int = 1,
                   stop=None, handle_signals: bool = True, queues=None) -> None:
    """UnsupportedError for a TSV worker option RQ cannot honour; the defaults pass."""
    if lease_seconds != DEFAULT_LEASE_SECONDS:
        refused, why = "lease_seconds", ("Redis has no leases: RQ fails the job of a dead worker "
                                         "once its heartbeat times out")
    elif retention_seconds != DEFAULT_RETENTION_SECONDS:
        refused, why = "retention_seconds", ("Redis keeps a result for the result_ttl set at "
                                             "enqueue (7 days)")
    elif concurrency != 1:
        refused, why = "concurrency", ("RQ's worker runs one job at a time: start more "
                                       "workers on Redis, processes on any machines")
    elif queues is not None:
        refused, why = "queues", ("named queues are not mapped to RQ's queues yet; every job "
                                  "on Redis is in one queue")
    elif stop is not None or not handle_signals:
        refused, why = "stop and handle_signals", ("RQ's worker on Redis stops at SIGTERM or "
                                                   "SIGINT; bound it with max_jobs or max_seconds")
    else:
        return
    raise UnsupportedError(f"{refused} is not supported on the RQ backend ({where}): {why}")


class DispatchWorker(SimpleWorker):
    """RQ's worker for one queue of ours. ``ran`` counts the jobs whose handler it called."""

    def __init__(self, rq_queue, handlers: Mapping[str, Callable[[dict], Any]],
                 bounds: Bounds, timeout: Optional[float]) -> None:
        check_handlers(handlers)
        if timeout is not None:
            check_number("timeout", timeout)
        super().__init__([rq_queue], connection=rq_queue.connection, job_class=SafeJob,
                         serializer=SERIALIZER)
        self.handlers, self.bounds, self.timeout, self.ran = handlers, bounds, timeout, 0

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        # The bounds are checked before each job is taken: the job in hand always finishes.
        if self.bounds.reached(self.ran):
            return None
        if self.bounds.deadline is not None:
            left = max(1, math.ceil(self.bounds.deadline - self.bounds.monotonic()))
            max_idle_time = left if max_idle_time is None else min(max_idle_time, left)
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def perform_job(self, job, queue) -> bool:
        reason = refusal(job)
        if reason is None:
            job.run_by, job.handlers = dispatch, self.handlers
            if job.meta.get("timeout") is None and self.timeout is not None:
                job.timeout = math.ceil(self.timeout)  # the job's own timeout comes first
            self.ran += 1
        else:
            logger.error("%s", foreign_message(job.id, reason))
            job.retries_left = None  # failed for good: never retried
        return super().perform_job(job, queue)

    def run(self, burst: bool) -> int:
        """Work (until no job is due, with ``burst``); returns how many jobs ran."""
        self.work(burst=burst, with_scheduler=True, logging_level="WARNING")
        return self.ran
