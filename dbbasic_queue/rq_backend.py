"""The same queue on RQ and a Redis server, for when one machine is no longer enough.

``DBBASIC_QUEUE_URL=redis://host:port/db`` makes the module-level functions use it, or build
``RQQueue(url)`` yourself. Jobs keep this package's ids, statuses and dict shape; every job
runs through one dispatcher function that looks the handler up by job type (no pickled
callables), and ``dbbasic-queue migrate`` moves the pending jobs of a TSV file here.
Needs ``pip install dbbasic-queue[rq]``.
"""

import json
import logging
import math
import secrets
import time
from datetime import datetime, timezone
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional

from redis import Redis
from rq import Queue as RedisJobQueue
from rq import Retry as RQRetry
from rq import SimpleWorker, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob
from rq.registry import ScheduledJobRegistry

from .backend import DEFAULT_MAX_ATTEMPTS, DEFAULT_RETENTION_SECONDS
from .checks import check_number, checked_job_type, checked_run_at, payload_json
from .errors import CorruptLineError, QueueError
from .job import Job, error_text, parse_line, result_json
from .options import decode_options
from .queue import Queue
from .transitions import retry_delay

logger = logging.getLogger("dbbasic_queue")

# Results are kept as long as the TSV queue keeps finished jobs (its retention), failed jobs
# as good as forever, as the TSV queue keeps them until purged.
RESULT_TTL_SECONDS = DEFAULT_RETENTION_SECONDS
FAILURE_TTL_SECONDS = 10 * 365 * 86400
_STATUSES = {"queued": "pending", "scheduled": "pending", "deferred": "pending",
             "created": "pending", "started": "processing", "finished": "completed",
             "failed": "failed", "stopped": "failed", "canceled": "cancelled"}

_handlers: Mapping[str, Callable[[dict], Any]] = {}  # set by the worker of this process
_ran = 0


def dispatch(job_type: str, payload_json: str) -> Any:
    """What RQ runs for every job: the handler for ``job_type``, with the payload. It keeps
    the attempts, the start and the error in the job's meta, for get_job."""
    global _ran
    job = get_current_job()
    job.meta["attempts"] = attempt = job.meta.get("attempts", 0) + 1
    job.meta["started_at"] = int(time.time())
    job.save_meta()
    _ran += 1
    logger.info("job %s %s started (attempt %d)", job.id, job_type, attempt)
    started = time.perf_counter()
    try:
        handler = _handlers.get(job_type)
        if handler is None:
            raise LookupError(f"no handler for job type {job_type!r}; add one to the handlers "
                              f"given to process_jobs")
        result = handler(json.loads(payload_json))
    except Exception as error:
        job.meta["error"] = error_text(error)
        job.save_meta()
        logger.warning("job %s %s failed (attempt %d): %s", job.id, job_type, attempt,
                       job.meta["error"])
        raise
    logger.info("job %s %s completed in %.1f ms", job.id, job_type,
                (time.perf_counter() - started) * 1000)
    text = result_json(result, job.id, job_type)
    return None if not text else json.loads(text)


class RQQueue:
    """A queue on RQ (``redis://host:port/db``) with the TSV Queue's methods."""

    capabilities: FrozenSet[str] = frozenset()  # none of those in backend.py, yet

    def __init__(self, url: str, *, name: str = "dbbasic-queue") -> None:
        self.url = url
        self.redis = Redis.from_url(url)
        self.rq = RedisJobQueue(name, connection=self.redis)

    def __repr__(self) -> str:
        return f"RQQueue({self.url!r})"

    def describe(self) -> str:
        return self.url

    def enqueue(self, job_type: str, payload: dict, run_at: Optional[float] = None, *,
                unique_key: Optional[str] = None, max_attempts: Optional[int] = None,
                timeout: Optional[float] = None) -> str:
        """As Queue.enqueue. The attempts (and their backoff) are fixed here, at enqueue:
        the job's ``max_attempts``, else 3."""
        if unique_key is not None:
            raise QueueError("unique_key is not supported on the RQ backend; see 'Graduating "
                             "to Redis' in the README")
        if max_attempts is not None:
            check_number("max_attempts", max_attempts, integer=True)
        if timeout is not None:
            check_number("timeout", timeout)
        now = time.time()
        return self._add(secrets.token_hex(8), checked_job_type(job_type), payload_json(payload),
                         checked_run_at(run_at, now), int(now), 0,
                         max_attempts or DEFAULT_MAX_ATTEMPTS, timeout)

    def _add(self, job_id, job_type, payload_json, run_at, created_at, attempts, max_attempts,
             timeout) -> str:
        left = max_attempts - attempts - 1
        options = dict(
            args=(job_type, payload_json), job_id=job_id, result_ttl=RESULT_TTL_SECONDS,
            failure_ttl=FAILURE_TTL_SECONDS, timeout=None if timeout is None else math.ceil(timeout),
            meta={"created_at": created_at, "run_at": run_at, "attempts": attempts},
            retry=RQRetry(max=left, interval=[round(retry_delay(attempts + n + 1))
                                              for n in range(left)]) if left > 0 else None)
        if run_at > time.time():
            self.rq.enqueue_at(datetime.fromtimestamp(run_at, timezone.utc), dispatch,
                               *options.pop("args"), **_rq_names(options))
        else:
            self.rq.enqueue_call(dispatch, **options)
        return job_id

    def get_job(self, job_id: str) -> Optional[Dict[str, Any]]:
        """As Queue.get_job, with RQ's statuses mapped onto this package's."""
        job = self._fetch(job_id)
        if job is None:
            return None
        status = _STATUSES.get(job.get_status().value, "pending")
        meta = job.meta
        if job.get_status().value == "scheduled":
            run_at = int(ScheduledJobRegistry(queue=self.rq).get_scheduled_time(job).timestamp())
        elif status in ("processing", "completed", "failed"):
            run_at = meta.get("started_at", meta.get("run_at", 0))
        else:
            run_at = meta.get("run_at", 0)
        return {"id": job.id, "type": job.args[0], "payload": json.loads(job.args[1]),
                "status": status, "created_at": meta.get("created_at", 0), "run_at": run_at,
                "attempts": meta.get("attempts", 0), "error": meta.get("error") or None,
                "result": job.return_value() if status == "completed" else None}

    def cancel_job(self, job_id: str) -> bool:
        """As Queue.cancel_job: only a pending job is cancelled."""
        job = self._fetch(job_id)
        if job is None or _STATUSES.get(job.get_status().value) != "pending":
            return False
        job.cancel()
        return True

    def _fetch(self, job_id) -> Optional[RQJob]:
        if not isinstance(job_id, str) or not job_id or any(c in job_id for c in "\t\r\n\"* "):
            return None
        try:
            return RQJob.fetch(job_id, connection=self.redis)
        except NoSuchJobError:
            return None

    def process_jobs(self, handlers: Mapping[str, Callable[[dict], Any]],
                     max_attempts: int = DEFAULT_MAX_ATTEMPTS, *, max_jobs: Optional[int] = None,
                     **ignored) -> int:
        """Run the due jobs as an RQ burst worker (with its scheduler), as cron would.
        ``max_attempts`` and the TSV worker's other options do not apply: see the README."""
        return self._work(handlers, burst=True, max_jobs=max_jobs)

    def work(self, handlers: Mapping[str, Callable[[dict], Any]],
             max_attempts: int = DEFAULT_MAX_ATTEMPTS, *, max_jobs: Optional[int] = None,
             **ignored) -> int:
        """Run jobs as they come: a long-running RQ worker with its scheduler. SIGTERM lets
        the job in hand finish (RQ's warm shutdown)."""
        return self._work(handlers, burst=False, max_jobs=max_jobs)

    def _work(self, handlers, burst: bool, max_jobs: Optional[int]) -> int:
        global _handlers, _ran
        if not isinstance(handlers, Mapping):
            raise TypeError(f"handlers must be a dict mapping job types to functions, "
                            f"not {type(handlers).__name__}")
        _handlers, _ran = handlers, 0
        SimpleWorker([self.rq], connection=self.redis).work(
            burst=burst, with_scheduler=True, max_jobs=max_jobs, logging_level="WARNING")
        return _ran


def _rq_names(options: dict) -> dict:
    """enqueue_at takes enqueue_call's options under other names."""
    renamed = dict(options)
    renamed["job_timeout"] = renamed.pop("timeout")
    return renamed


def migrate(source: Queue, target: RQQueue, dry_run: bool = False) -> List[Job]:
    """Move the pending jobs of a TSV queue (due and scheduled) into Redis, keeping their
    ids, run_at, attempts and options. A job is marked moved in the TSV file (``cancelled``,
    error ``moved to redis://...``) only once Redis has it, and a job Redis has already is
    not added again: an interrupted migration loses nothing, and a second run duplicates
    nothing. Returns the jobs moved (or, with ``dry_run``, that would be)."""
    pending = []
    for _, line in source.table.lines():
        try:
            job = parse_line(line)
        except CorruptLineError:
            continue  # reported by the TSV worker; stays in the file
        if job.status == "pending":
            pending.append(job)
    if dry_run:
        return pending
    for job in pending:
        if target._fetch(job.id) is None:
            options = decode_options(job.options)
            target._add(job.id, job.type, job.payload, job.run_at, job.created_at, job.attempts,
                        max(options.get("max_attempts") or DEFAULT_MAX_ATTEMPTS, job.attempts + 1),
                        options.get("timeout"))
    moved, note = {job.id for job in pending}, f"moved to {target.url}"
    source.update_each(lambda job: job.evolve(status="cancelled", error=note)
                        if job.id in moved and job.status == "pending" else None)
    return pending
