"""The same queue on RQ and a Redis server, for when one machine is no longer enough.

``DBBASIC_QUEUE_URL=redis://host:port/db`` makes the module-level functions use it, or build
``RQQueue(url)`` yourself. Jobs keep this package's ids, statuses and dict shape. Every job
is JSON naming one function, ``dispatch``, which looks the handler up by job type; a job in
Redis that is anything else is refused, never loaded or run (see ``rq/jobs.py``). Named
queues and priorities are RQ queues, taken in claim order; a pause is a flag the worker reads
before each take (``rq/queues.py``). Listing and stats read RQ's registries; the verbs and
options RQ has no counterpart for raise UnsupportedError.
``dbbasic-queue migrate`` moves the pending jobs of a TSV file here. Needs the ``rq`` extra.
"""

import contextlib
import json
import logging
import math
import re
import secrets
import time
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional
from urllib.parse import urlsplit, urlunsplit

import redis
from rq import Queue as RedisJobQueue
from rq import Retry as RQRetry
from rq.exceptions import InvalidJobOperation, NoSuchJobError

from .. import backend, hooks
from ..backend import DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS, DEFAULT_RETENTION_SECONDS
from ..model.checks import (check_attempts, check_duration, checked_job_type, checked_purge,
                            checked_run_at, payload_json)
from ..errors import CorruptLineError, UnsupportedError
from ..model.job import PENDING, Job, job_line, one_line, parse_line
from ..storage.edits import has_line
from ..model.options import decode_options, encode_options, register
from ..model.queues import (DEFAULT_QUEUE, QueueChoice, Scope, check_priority, check_queue_name,
                            queue_and_priority)
from ..queue import Queue
from .jobs import DISPATCHER, SERIALIZER, ForeignJobError, SafeJob, read_job, read_options
from .listing import job_dicts, read_all, summary
from .queues import Pair, QueueMap, rq_queue_name
from .worker import DispatchWorker, dispatch, refuse_options
from ..model.options import Handlers, schedules_of
from ..periodic.schedules import WITHOUT_PERIODIC
from ..model.dependencies import LINKS
from ..model.transitions import is_purged, retry_delay
from ..model.words import plural
from ..worker.settings import Bounds

__all__ = ["RQQueue", "migrate", "dispatch", "ForeignJobError"]

logger = logging.getLogger("dbbasic_queue")

# Results are kept as long as the TSV queue keeps finished jobs (its retention), failed jobs
# as good as forever, as the TSV queue keeps them until purged.
RESULT_TTL_SECONDS = DEFAULT_RETENTION_SECONDS
FAILURE_TTL_SECONDS = 10 * 365 * 86400
DEFAULT_NAME = "dbbasic-queue"
_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")  # RQ reads "a:b" as an execution of job "a"


class RQQueue:
    """A queue on RQ (``redis://host:port/db``) behind the same interface as the TSV Queue."""

    capabilities = frozenset({backend.LISTING, backend.QUEUES, backend.RETRY, backend.PURGE})

    def __init__(self, url: str, *, name: str = DEFAULT_NAME) -> None:
        self.url = url
        self.name = name
        self.redis = redis.Redis.from_url(url)
        self.rq_queues: Dict[Pair, RedisJobQueue] = {}
        self.rq = self.rq_queue((DEFAULT_QUEUE, 0))  # where every job was before queues
        self.queue_map = QueueMap(self.redis, name)
        self.handlers = Handlers()  # filled by @queue.handler(...)

    def rq_queue(self, pair: Pair) -> RedisJobQueue:
        """The RQ queue of a (queue, priority) pair (see rq/queues.py)."""
        found = self.rq_queues.get(pair)
        if found is None:
            found = self.rq_queues[pair] = RedisJobQueue(
                rq_queue_name(self.name, *pair), connection=self.redis, serializer=SERIALIZER,
                job_class=SafeJob)
        return found

    def all_rq_queues(self) -> List[RedisJobQueue]:
        """The RQ queues of every pair in use, the default one first."""
        return [self.rq_queue(pair) for pair in self.queue_map.pairs()]

    def __repr__(self) -> str:
        return f"RQQueue({self.describe()!r})"

    def describe(self) -> str:
        """The Redis URL, its password masked."""
        return _without_password(self.url)

    def enqueue(self, job_type: str, payload: dict, run_at: Optional[float] = None, *,
                unique_key: Optional[str] = None, max_attempts: Optional[int] = None,
                timeout: Optional[float] = None, queue: Optional[str] = None,
                priority: Optional[int] = None, concurrency_key: Optional[str] = None,
                concurrency_limit: Optional[int] = None, rate_limit: Optional[str] = None,
                rate_key: Optional[str] = None, depends_on=None,
                allow_failure: bool = False) -> str:
        """As Queue.enqueue. The attempts (and their backoff) are fixed here, at enqueue:
        the job's ``max_attempts``, else 3. A ``timeout`` is rounded up to whole seconds.
        ``queue`` and ``priority`` choose the job's RQ queue; concurrency keys and rate
        limits are refused (UnsupportedError), and so is ``depends_on`` (see chain)."""
        if depends_on is not None or allow_failure:
            self.chain()
        if (concurrency_key, concurrency_limit, rate_limit, rate_key) != (None,) * 4:
            raise UnsupportedError(f"concurrency_key and rate_limit are not supported on the RQ "
                                   f"backend ({self.describe()}): RQ counts no starts by key; "
                                   f"enqueue without them, or use the TSV queue")
        prepared = self._prepare(job_type, payload, run_at, unique_key, max_attempts, timeout,
                                 queue, priority)
        with self._reaching():
            return self._add(*prepared)

    def enqueue_many(self, jobs, run_at: Optional[float] = None, **options) -> List[str]:
        """As Queue.enqueue_many: every job checked before any is added; then one Redis
        enqueue each (RQ adds jobs one by one), so a lost connection midway leaves the
        first ones added."""
        if "unique_key" in options:
            raise TypeError("enqueue_many takes no unique_key: enqueue such jobs one by one")
        if {"concurrency_key", "concurrency_limit", "rate_limit", "rate_key"} & set(options):
            raise UnsupportedError(f"concurrency_key and rate_limit are not supported on the RQ "
                                   f"backend ({self.describe()}): RQ counts no starts by key")
        prepared = []
        for number, job in enumerate(list(jobs)):
            try:
                job_type, payload = job
                prepared.append(self._prepare(job_type, payload, run_at, **options))
            except (TypeError, ValueError) as error:
                raise type(error)(f"job {number} of enqueue_many: {error}") from None
        with self._reaching():
            return [self._add(*job) for job in prepared]

    def chain(self, *steps, **options) -> List[str]:
        """Refused (UnsupportedError), as are depends_on and batch: RQ leaves the
        dependents of a failed job deferred for ever, where the TSV queue cancels them."""
        raise UnsupportedError(f"depends_on, chain and batch are not supported on the RQ "
                               f"backend ({self.describe()}) yet: RQ keeps the dependents of a "
                               f"failed job deferred for ever, where the TSV queue cancels "
                               f"them; use the TSV queue for jobs that wait for jobs")

    def batch(self, on_complete=None, **options):
        """Refused (UnsupportedError): see chain."""
        self.chain()

    def enqueue_after(self, register_callback: Callable[[Callable[[], Any]], Any],
                      job_type: str, payload: dict, run_at: Optional[float] = None,
                      **options) -> str:
        """As Queue.enqueue_after: checks now, adds the job when ``register_callback`` calls
        the function it is given (at commit), and returns the id the job will have."""
        prepared = self._prepare(job_type, payload, run_at, **options)

        def write() -> str:
            with self._reaching():
                return self._add(*prepared)
        register_callback(write)
        return prepared[0]

    def _prepare(self, job_type, payload, run_at=None, unique_key=None, max_attempts=None,
                 timeout=None, queue=None, priority=None) -> tuple:
        if queue is None:
            queue = self.handlers.queues.get(job_type, DEFAULT_QUEUE)
        pair = (check_queue_name(queue), 0 if priority is None else check_priority(priority))
        if unique_key is not None:
            raise UnsupportedError(f"unique_key is not supported on the RQ backend "
                                   f"({self.describe()}); see 'Graduating to Redis' in the README")
        if max_attempts is not None:
            check_attempts("max_attempts", max_attempts)
        if timeout is not None:
            check_duration("timeout", timeout)
        now = time.time()
        return (secrets.token_hex(8), checked_job_type(job_type), payload_json(payload),
                checked_run_at(run_at, now), int(now), 0, max_attempts or DEFAULT_MAX_ATTEMPTS,
                timeout, pair)

    def _add(self, job_id, job_type, payload_json, run_at, created_at, attempts, max_attempts,
             timeout, pair: Pair = (DEFAULT_QUEUE, 0), kept: Optional[dict] = None) -> str:
        left = max_attempts - attempts - 1
        meta = {"created_at": created_at, "run_at": run_at, "attempts": attempts,
                "max_attempts": max_attempts, "timeout": timeout, **(kept or {})}
        if pair[0] != DEFAULT_QUEUE:  # kept as the TSV queue keeps them: only when not the default
            meta["queue"] = pair[0]
        if pair[1]:
            meta["priority"] = pair[1]
        options = dict(
            job_id=job_id, result_ttl=RESULT_TTL_SECONDS, failure_ttl=FAILURE_TTL_SECONDS,
            meta=meta,
            retry=RQRetry(max=left, interval=[round(retry_delay(attempts + n + 1))
                                              for n in range(left)]) if left > 0 else None)
        if timeout is not None:
            options["job_timeout"] = math.ceil(timeout)
        self.queue_map.record(*pair)  # before the job, so that a worker looking finds it
        rq = self.rq_queue(pair)
        if run_at > time.time():
            rq.enqueue_at(datetime.fromtimestamp(run_at, timezone.utc), DISPATCHER,
                               job_type, payload_json, **options)
        else:
            rq.enqueue_call(DISPATCHER, (job_type, payload_json),
                                 timeout=options.pop("job_timeout", None), **options)
        if hooks.registered:
            hooks.call(hooks.JobEvent("on_enqueue", job_id, job_type, pair[0], pair[1], attempts,
                                      max_attempts, json.loads(payload_json), run_at=run_at))
        return job_id

    def handler(self, job_type: str, *, queue: Optional[str] = None,
                limit: Optional[int] = None, rate_limit: Optional[str] = None) -> Callable:
        """A decorator: ``@queue.handler("send_email")`` adds the function to
        ``queue.handlers``, for ``process_jobs(queue.handlers)``; with ``queue="emails"``,
        jobs of the type enqueued through this queue go to that queue unless told otherwise.
        ``limit`` and ``rate_limit`` are refused, as enqueue refuses their options."""
        if limit is not None or rate_limit is not None:
            raise UnsupportedError(f"limit= and rate_limit= are not supported on the RQ "
                                   f"backend ({self.describe()}): RQ counts no starts by key")
        return register(self.handlers, job_type, queue)

    def periodic(self, *args, **kwargs) -> Callable:
        """Refused: RQ cannot fire a schedule exactly once per slot (see WITHOUT_PERIODIC)."""
        backend.require(self, backend.PERIODIC, "@periodic (periodic jobs)", WITHOUT_PERIODIC)

    def get_job(self, job_id: str) -> Optional[Dict[str, Any]]:
        """As Queue.get_job, with RQ's statuses mapped onto this package's. A job in Redis
        that is not ours raises ForeignJobError (a CorruptLineError), as a corrupt line does."""
        with self._reaching():
            job = self._fetch(job_id)
            try:
                return None if job is None else read_job(job, self._schedule_of(job))
            except InvalidJobOperation:  # deleted while being read
                return None

    def tracebacks(self, job_id: str) -> List[Dict[str, Any]]:
        """The tracebacks of the job's last failed attempts (at most 10), oldest first:
        dicts of attempt, failed_at, error, exception (its class path) and traceback."""
        with self._reaching():
            job = self._fetch(job_id)
            if job is None:
                return []
            read_job(job)  # a foreign job raises ForeignJobError here, as in get_job
            kept = job.meta.get("tracebacks")
        return [entry for entry in kept if isinstance(entry, dict)] if isinstance(kept, list) else []

    def job_options(self, job_id: str) -> Optional[Dict[str, Any]]:
        """As Queue.job_options: max_attempts (fixed at enqueue on RQ) and timeout, if any."""
        with self._reaching():
            job = self._fetch(job_id)
            return None if job is None else read_options(job)

    def job_info(self, job_id: str) -> Optional[Dict[str, Any]]:
        """As Queue.job_info: a running job's progress is in its meta (saved at most every
        half second); no stop requests (see stop), no waiting (see chain)."""
        job = self.get_job(job_id)
        if job is None:
            return None
        progress = None
        if job["status"] == "processing":
            with self._reaching():
                found = self._fetch(job_id)
                progress = None if found is None else found.meta.get("progress")
        return dict(job, options=self.job_options(job_id) or {}, waiting=None,
                    progress=progress if isinstance(progress, dict) else None,
                    stop_requested=None)

    def stop(self, job_id: str, by: Optional[str] = None) -> bool:
        """Refused (UnsupportedError): RQ's stop command kills the work horse, which our
        jobs' outcome cannot yet tell from a crash; stop a job on the TSV queue."""
        backend.require(self, backend.JOB_CONTROL, "stopping a running job (stop)",
                        "RQ's own `rq` stop command kills its work horse; on the TSV queue, "
                        "Queue.stop asks the handler first")
        return False

    def cancel_job(self, job_id: str) -> bool:
        """As Queue.cancel_job: only a pending job is cancelled."""
        with self._reaching():
            job = self._fetch(job_id)
            try:
                if job is None or read_job(job, self._schedule_of(job))["status"] != "pending":
                    return False
            except InvalidJobOperation:
                return False
            job.cancel()
            return True

    def delete(self, job_id: str) -> bool:
        """As Queue.delete: any job but one a worker runs, removed from Redis."""
        with self._reaching():
            job = self._fetch(job_id)
            try:
                if job is None or read_job(job, self._schedule_of(job))["status"] == "processing":
                    return False
            except InvalidJobOperation:
                return False
            job.delete()
            return True

    def retry_job(self, job_id: str) -> bool:
        """As Queue.retry_job: a failed or cancelled job goes back to pending, due now, with
        fresh attempts (its last error and its tracebacks kept). In Redis it is added again,
        under its id, with its type, payload and options; False for any other job."""
        with self._reaching():
            job = self._fetch(job_id)
            try:
                shown = None if job is None else read_job(job, self._schedule_of(job))
            except InvalidJobOperation:
                return False
            if shown is None or shown["status"] not in ("failed", "cancelled"):
                return False
            meta = job.meta
            kept = {key: meta[key] for key in ("error", "tracebacks") if key in meta}
            pair = (meta.get("queue", DEFAULT_QUEUE), meta.get("priority", 0))
            job.delete()
            self._add(job_id, shown["type"], job.args[1], int(time.time()),
                      meta.get("created_at", 0), 0, meta.get("max_attempts", DEFAULT_MAX_ATTEMPTS),
                      meta.get("timeout"), pair, kept)
            return True

    def retry_failed(self, job_type: Optional[str] = None) -> int:
        """As Queue.retry_failed: every failed job (of ``job_type``) retried; how many."""
        failed = [job["id"] for job in self.jobs()
                  if job["status"] == "failed" and job_type in (None, job["type"])]
        return sum(1 for job_id in failed if self.retry_job(job_id))

    def run_now(self, job_id: str, force: bool = False) -> bool:
        """As Queue.run_now for a pending job: one waiting for its run_at or a retry is
        queued now, keeping its attempts. A processing job is not put back, even with
        ``force`` (UnsupportedError): Redis has no lease to take it from."""
        with self._reaching():
            job = self._fetch(job_id)
            status = None if job is None else read_job(job)["status"]
            if status == "processing" and force:
                raise self._unsupported("run_now(force=True) of a processing job")
            if status != "pending":
                return False
            home = self._queue_of(job)
            if home.scheduled_job_registry.remove(job):  # else the scheduler queued it
                home.enqueue_job(job)
            return True

    def run_now_all(self, job_type: Optional[str] = None) -> int:
        """As Queue.run_now_all: the scheduled jobs of ours (of ``job_type``) queued now."""
        now = time.time()
        waiting = [job["id"] for job in self.jobs() if job["status"] == "pending" and
                   job["run_at"] > now and job_type in (None, job["type"])]
        return sum(1 for job_id in waiting if self.run_now(job_id))

    def purge(self, older_than: float, statuses=("completed", "cancelled")) -> int:
        """As Queue.purge: the finished jobs of ``statuses`` whose last activity is more than
        ``older_than`` seconds ago, deleted from Redis (where RQ's TTLs have not already);
        how many. A pending or processing job is never purged."""
        statuses = checked_purge(older_than, statuses)
        before = time.time() - older_than
        doomed = [job["id"] for job in self.jobs() if is_purged(job, statuses, before)]
        purged = 0
        with self._reaching():
            for job_id in doomed:
                job = self._fetch(job_id)
                if job is not None:
                    job.delete()
                    purged += 1
        return purged

    def _unsupported(self, what: str) -> UnsupportedError:
        return UnsupportedError(f"{what} is not supported on the RQ backend ({self.describe()}); "
                                f"RQ's own tools do it on Redis: rq requeue, rq empty")

    def jobs(self) -> Iterator[Dict[str, Any]]:
        """Every job of this queue in Redis (queued, scheduled, started, finished, failed,
        cancelled, deferred), oldest first, as get_job dicts; foreign jobs are logged and
        skipped. Reads every job: for inspection, not for a hot path."""
        with self._reaching():
            found = job_dicts(self.all_rq_queues())
        yield from found

    def workers(self) -> List[Dict[str, Any]]:
        """Refused: the Redis backend keeps no worker registry (RQ's own is ``rq info``)."""
        backend.require(self, backend.WORKERS, "the worker registry (workers)",
                        "see RQ's workers with `rq info --url URL`")
        return []

    def stats(self) -> Dict[str, Any]:
        """As Queue.stats, from RQ's registries (``queue`` in place of the file and its size),
        with the jobs to run by queue and the pauses; ``corrupt_lines`` counts foreign jobs."""
        with self._reaching():
            return {"queue": self.describe(), **summary(self.all_rq_queues(), time.time()),
                    "paused": self.queue_map.listing()}

    def pause(self, queue: Optional[str] = None, *, job_type: Optional[str] = None) -> bool:
        """As Queue.pause for a queue: no worker takes its jobs from its next take on (within
        a second for a waiting one); jobs running finish. True if it was not paused already.
        A job type cannot be paused on Redis (UnsupportedError)."""
        return self._mark_pause(queue, job_type, True)

    def resume(self, queue: Optional[str] = None, *, job_type: Optional[str] = None) -> bool:
        """Undo ``pause`` for ``queue``; True if it was paused."""
        return self._mark_pause(queue, job_type, False)

    def paused(self) -> List[Dict[str, Any]]:
        """The pauses in force: dicts of kind ("queue"), name and paused_at."""
        with self._reaching():
            return self.queue_map.listing()

    def _mark_pause(self, queue, job_type, paused: bool) -> bool:
        if job_type is not None:
            raise UnsupportedError(f"pausing a job type is not supported on the RQ backend "
                                   f"({self.describe()}): RQ cannot pass over a job in a queue "
                                   f"without taking it; pause its queue, or give the type a "
                                   f"queue of its own with @handler(..., queue=...)")
        if queue is None:
            raise TypeError("pause() and resume() need a queue name, such as pause('emails')")
        with self._reaching():
            return self.queue_map.mark(queue, paused)

    def _queue_of(self, job) -> RedisJobQueue:
        """The RQ queue a job of ours was enqueued in."""
        return RedisJobQueue(job.origin, connection=self.redis, serializer=SERIALIZER,
                             job_class=SafeJob)

    def _schedule_of(self, job):
        return self._queue_of(job).scheduled_job_registry

    def _fetch(self, job_id) -> Optional[SafeJob]:
        if not isinstance(job_id, str) or not _ID.fullmatch(job_id):
            return None
        try:
            return SafeJob.fetch(job_id, connection=self.redis, serializer=SERIALIZER)
        except NoSuchJobError:
            return None

    def check_worker(self, handlers: Mapping[str, Callable[[dict], Any]],
                     max_attempts: int = DEFAULT_MAX_ATTEMPTS, *, max_jobs=None, max_seconds=None,
                     lease_seconds: float = DEFAULT_LEASE_SECONDS,
                     retention_seconds: Optional[float] = DEFAULT_RETENTION_SECONDS,
                     timeout: Optional[float] = None, concurrency: int = 1, queues=None,
                     stop_grace: float = backend.DEFAULT_STOP_GRACE) -> None:
        """Raise as process_jobs and work would for these settings, touching nothing."""
        check_attempts("max_attempts", max_attempts)
        refuse_options(self.describe(), lease_seconds, retention_seconds, concurrency,
                       queues=queues, stop_grace=stop_grace)
        Bounds(max_jobs, max_seconds)
        if schedules_of(handlers):
            backend.require(self, backend.PERIODIC, "@periodic (periodic jobs)", WITHOUT_PERIODIC)

    def process_jobs(self, handlers: Mapping[str, Callable[[dict], Any]],
                     max_attempts: int = DEFAULT_MAX_ATTEMPTS, *,
                     lease_seconds: float = DEFAULT_LEASE_SECONDS,
                     max_jobs: Optional[int] = None, max_seconds: Optional[float] = None,
                     retention_seconds: Optional[float] = DEFAULT_RETENTION_SECONDS,
                     timeout: Optional[float] = None, concurrency: int = 1, queues=None,
                     stop_grace: float = backend.DEFAULT_STOP_GRACE) -> int:
        """Run the due jobs as RQ's burst worker (with its scheduler), as cron would; returns
        how many ran. ``max_jobs``, ``max_seconds`` (the job in hand finishes) and ``timeout``
        (for jobs without their own, rounded up to whole seconds) are honoured;
        ``max_attempts`` does not apply, a job's attempts being fixed at enqueue; ``queues``
        (a list, in strict order) is served as the TSV worker serves it. A ``lease_seconds``,
        ``retention_seconds`` or ``concurrency`` other than the default, or ``queues`` with
        weights, raises UnsupportedError."""
        check_attempts("max_attempts", max_attempts)
        refuse_options(self.describe(), lease_seconds, retention_seconds, concurrency,
                       queues=queues, stop_grace=stop_grace)
        return self._work(handlers, True, max_jobs, max_seconds, timeout, queues)

    def work(self, handlers: Mapping[str, Callable[[dict], Any]],
             max_attempts: int = DEFAULT_MAX_ATTEMPTS, *,
             lease_seconds: float = DEFAULT_LEASE_SECONDS,
             max_jobs: Optional[int] = None, max_seconds: Optional[float] = None,
             retention_seconds: Optional[float] = DEFAULT_RETENTION_SECONDS,
             timeout: Optional[float] = None, concurrency: int = 1, stop=None,
             handle_signals: bool = True, queues=None,
             stop_grace: float = backend.DEFAULT_STOP_GRACE) -> int:
        """Run jobs as they come: a long-running RQ worker with its scheduler, options as
        process_jobs. SIGTERM lets the job in hand finish (RQ's warm shutdown); ``stop`` and
        ``handle_signals`` are not supported."""
        check_attempts("max_attempts", max_attempts)
        refuse_options(self.describe(), lease_seconds, retention_seconds, concurrency, stop,
                       handle_signals, queues, stop_grace)
        return self._work(handlers, False, max_jobs, max_seconds, timeout, queues)

    def _work(self, handlers, burst: bool, max_jobs, max_seconds, timeout,
              queues: QueueChoice) -> int:
        if schedules_of(handlers):  # declared with dbbasic_queue.periodic before the URL was set
            backend.require(self, backend.PERIODIC, "@periodic (periodic jobs)", WITHOUT_PERIODIC)
        worker = DispatchWorker(self.rq_queue, self.queue_map, Scope.of(None, queues).queues,
                                handlers, Bounds(max_jobs, max_seconds), timeout)
        with self._reaching():
            return worker.run(burst)

    @contextlib.contextmanager
    def _reaching(self) -> Iterator[None]:
        """Redis out of reach becomes the built-in ConnectionError (an OSError), naming it."""
        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            raise ConnectionError(f"cannot reach Redis at {self.describe()} ({error}); is "
                                  f"redis-server running, and is the URL right?") from None


def _without_password(url: str) -> str:
    """The URL with its password masked, fit for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def migrate(source: Queue, target: RQQueue, dry_run: bool = False) -> List[Job]:
    """Move the pending jobs of a TSV queue (due and scheduled) into Redis, keeping their
    ids, run_at, attempts and options. A job is marked moved in the TSV file (``cancelled``,
    error ``moved to redis://...``) only once Redis has it, and a job Redis has already is
    not added again: an interrupted migration loses nothing, and a second run duplicates
    nothing. Returns the jobs moved (or, with ``dry_run``, that would be)."""
    pending, linked = [], 0
    for _, line in source.table.lines():
        try:
            job = parse_line(line)
        except CorruptLineError:
            continue  # reported by the TSV worker; stays in the file
        if job.status == "pending" and set(decode_options(job.options)) & LINKS:
            linked += 1  # RQ has no dependencies here: it stays, to run with its links
        elif job.status == "pending":
            pending.append(job)
    if linked:
        logger.warning("left %s in %s: they wait for other jobs, or others wait for them "
                       "(depends_on, chain, batch), which the RQ backend has not; let them run "
                       "there", plural(linked, "pending job"), source.path)
    if dry_run:
        return pending
    with target._reaching():
        for job in pending:
            if target._fetch(job.id) is None:
                options = decode_options(job.options)
                target._add(job.id, job.type, job.payload, job.run_at, job.created_at,
                            job.attempts, max(options.get("max_attempts") or DEFAULT_MAX_ATTEMPTS,
                                              job.attempts + 1), options.get("timeout"),
                            queue_and_priority(options))
    moved, note = {job.id for job in pending}, f"moved to {_without_password(target.url)}"
    source.update_each(lambda job: job.evolve(status="cancelled", error=note)
                       if job.id in moved and job.status == "pending" else None)
    return pending


def migrate_back(source: RQQueue, target: Queue, dry_run: bool = False) -> List[Dict[str, Any]]:
    """Move the pending jobs of Redis (queued and scheduled) into a TSV queue, keeping their
    ids, type, payload, run_at, attempts, max_attempts, timeout, queue and priority. A job
    is appended to the file unless the file has its id already, and only then cancelled in
    Redis (its error saying where it went): an interrupted migration loses nothing, and a
    second run moves nothing. Returns the jobs moved (or, with ``dry_run``, that would be),
    as get_job dicts."""
    with source._reaching():
        waiting = []
        for rq_job, schedule in read_all(source.all_rq_queues()):
            try:
                shown = read_job(rq_job, schedule, refresh=False)
            except ForeignJobError as error:
                logger.warning("%s; left in Redis", error)
                continue
            if shown["status"] == "pending":
                waiting.append((rq_job, shown))
    if dry_run:
        return [shown for _, shown in waiting]
    note = f"moved to {target.describe()}"
    for rq_job, shown in waiting:
        meta = rq_job.meta
        options = encode_options(None, meta.get("max_attempts"), meta.get("timeout"),
                                 meta.get("queue"), meta.get("priority") or None)
        try:  # as the file's own enqueue checks them: anyone may have written Redis
            line = job_line(shown["id"], checked_job_type(shown["type"]),
                            payload_json(shown["payload"]), PENDING, int(shown["created_at"]),
                            int(shown["run_at"]), int(shown["attempts"]),
                            one_line(shown["error"] or ""), "", options)
        except (TypeError, ValueError) as error:
            logger.warning("job %s in Redis: %s; left there", shown["id"], error)
            continue
        prefix = shown["id"].encode() + b"\t"
        target.table.append(line, durable=target.durable,
                            unless=lambda fd: "there" if has_line(fd, prefix) else None)
        with source._reaching():
            rq_job.meta["error"] = note
            rq_job.save_meta()
            rq_job.cancel()
    return [shown for _, shown in waiting]
