"""The same queue on RQ and a Redis server, for when one machine is no longer enough.

``DBBASIC_QUEUE_URL=redis://host:port/db`` makes the module-level functions use it, or build
``RQQueue(url)`` yourself. Jobs keep this package's ids, statuses and dict shape. Every job
is JSON naming one function, ``dispatch``, which looks the handler up by job type; a job in
Redis that is anything else is refused, never loaded or run (see ``rq/jobs.py``). Named
queues and priorities are RQ queues, taken in claim order; a pause is a flag the worker reads
before each take (``rq/queues.py``). Unique keys are Redis strings set with the job
(``rq/unique.py``); jobs that wait for jobs are RQ's dependencies, ending as on the file
(``rq/links.py``). Listing and stats read RQ's registries; the verbs and options RQ has no
counterpart for raise UnsupportedError.
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
from redis.exceptions import WatchError
from rq import Queue as RedisJobQueue
from rq import Retry as RQRetry
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Dependency

from .. import backend, hooks
from ..backend import DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS, DEFAULT_RETENTION_SECONDS
from ..model.checks import (check_attempts, check_duration, check_number, checked_job_type,
                            checked_purge, checked_run_at, payload_json)
from ..errors import CorruptLineError, UnsupportedError
from ..model.job import PENDING, Job, job_line, one_line, parse_line
from ..storage.edits import has_line
from ..storage.unique import UniqueKeys as FileUniqueKeys
from ..storage.notes import checked_note
from ..model.options import decode_options, encode_options, register
from ..model.dependencies import checked_dependencies, checked_step, waiting_for
from ..workflows import Batch
from . import links
from ..model.queues import (DEFAULT_QUEUE, QueueChoice, Scope, check_priority, check_queue_name,
                            queue_and_priority)
from ..queue import Queue
from .jobs import (DISPATCHER, SERIALIZER, ForeignJobError, SafeJob, drop_executions, read_job,
                   read_options)
from .listing import job_dicts, read_all, summary
from .queues import Pair, QueueMap, rq_queue_name
from .stops import RedisStops
from .unique import UniqueKeys
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

    capabilities = frozenset({backend.LISTING, backend.QUEUES, backend.RETRY, backend.PURGE,
                              backend.UNIQUE_KEYS, backend.WORKFLOWS, backend.JOB_CONTROL})

    def __init__(self, url: str, *, name: str = DEFAULT_NAME) -> None:
        self.url = url
        self.name = name
        self.redis = redis.Redis.from_url(url)
        self.rq_queues: Dict[Pair, RedisJobQueue] = {}
        self.rq = self.rq_queue((DEFAULT_QUEUE, 0))  # where every job was before queues
        self.queue_map = QueueMap(self.redis, name)
        self.unique_keys = UniqueKeys(self.redis, name)
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
        limits are refused (UnsupportedError). A ``unique_key`` held by a pending or
        processing job gives that job's id. ``depends_on`` and ``allow_failure`` are the TSV
        queue's (see rq/links.py), but for a ``run_at`` later than now (UnsupportedError)."""
        if (concurrency_key, concurrency_limit, rate_limit, rate_key) != (None,) * 4:
            raise UnsupportedError(f"concurrency_key and rate_limit are not supported on the RQ "
                                   f"backend ({self.describe()}): RQ counts no starts by key; "
                                   f"enqueue without them, or use the TSV queue")
        prepared = self._prepare(job_type, payload, run_at, unique_key, max_attempts, timeout,
                                 queue, priority)
        if depends_on is None and not allow_failure:
            with self._reaching():
                return self._add(*prepared, unique_key=unique_key)
        if depends_on is None:
            raise TypeError("allow_failure goes with depends_on, such as depends_on=[job_id], "
                            "allow_failure=True")
        if unique_key is not None:
            raise TypeError("a job with depends_on takes no unique_key")
        if not isinstance(allow_failure, bool):
            raise TypeError(f"allow_failure must be True or False, not {allow_failure!r}")
        ids = checked_dependencies(depends_on)
        self._refuse_later_run_at(prepared[3])
        with self._reaching():
            for other in ids:
                found = self._fetch(other)
                if found is None:
                    raise ValueError(f"depends_on names job {other}, but {self.describe()} has "
                                     f"no such job; nothing was enqueued")
                read_job(found)  # a foreign job raises ForeignJobError: nothing is enqueued
            return self._add(*prepared, after=ids, allow_failure=allow_failure)

    def _refuse_later_run_at(self, run_at: int) -> None:
        if run_at > time.time():
            raise UnsupportedError(f"a job that waits for others (depends_on) with a run_at "
                                   f"later than now is not supported on the RQ backend "
                                   f"({self.describe()}): RQ queues it the moment its "
                                   f"dependencies end; give the run_at to the first job")

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

    def chain(self, *steps, run_at: Optional[float] = None, allow_failure: bool = False,
              **options) -> List[str]:
        """As Queue.chain: each step waits until the one before it has completed (RQ's
        dependencies); a step that fails for good or is cancelled cancels the steps after it
        (with ``allow_failure``, they run all the same). ``run_at`` is the first step's: the
        others wait for it. Every step is checked before any is added; returns the ids."""
        if not steps:
            raise ValueError("chain takes at least one step, such as ('charge', {'order': 7})")
        if not isinstance(allow_failure, bool):
            raise TypeError(f"allow_failure must be True or False, not {allow_failure!r}")
        prepared = []
        for number, step in enumerate(steps):
            try:
                job_type, payload, own = checked_step(step, "chain")
                prepared.append(self._prepare(job_type, payload, None if number else run_at,
                                              **_step_options(options, own)))
            except (TypeError, ValueError) as error:
                raise type(error)(f"step {number} of chain: {error}") from None
        with self._reaching():
            for number, job in enumerate(prepared):
                self._add(*job, after=[prepared[number - 1][0]] if number else None,
                          allow_failure=allow_failure)
        return [job[0] for job in prepared]

    def batch(self, on_complete=None, **options) -> Batch:
        """As Queue.batch: jobs added together, and ``on_complete`` run once every one has
        ended (completed, failed for good, cancelled), with ``payload["batch"]`` holding the
        counts. On Redis its members are added one by one, then the on_complete job,
        depending on them all (allow_failure); see rq/links.py."""
        return Batch(self._write_batch, on_complete, options)

    def _write_batch(self, members, on_complete, callback_id: Optional[str]) -> None:
        prepared = []
        for number, (job_id, job_type, payload, run_at, options) in enumerate(members):
            try:
                prepared.append((job_id,) + self._prepare(job_type, payload, run_at,
                                                          **_step_options(options, {}))[1:])
            except (TypeError, ValueError) as error:
                raise type(error)(f"job {number} of the batch: {error}") from None
        callback = None
        if callback_id is not None:
            job_type, payload, own = checked_step(on_complete, "on_complete")
            counts = {"size": len(members), "completed": 0, "failed": 0, "cancelled": 0}
            if not members:  # nothing to wait for: due now, with the counts
                payload = {**payload, "batch": {"id": callback_id, **counts}}
            callback = (callback_id,) + self._prepare(job_type, payload, None,
                                                      **_step_options(own, {}))[1:]
        with self._reaching():
            for job in prepared:
                self._add(*job)
            if callback is not None and members:
                self._add(*callback, kept={"batch": {"size": len(members)}},
                          after=[job[0] for job in prepared], allow_failure=True)
            elif callback is not None:
                self._add(*callback)

    def enqueue_after(self, register_callback: Callable[[Callable[[], Any]], Any],
                      job_type: str, payload: dict, run_at: Optional[float] = None,
                      **options) -> str:
        """As Queue.enqueue_after: checks now, adds the job when ``register_callback`` calls
        the function it is given (at commit), and returns the id the job will have. With a
        ``unique_key`` held at commit by a live job, nothing is added: that job stands for it."""
        prepared = self._prepare(job_type, payload, run_at, **options)

        def write() -> str:
            with self._reaching():
                return self._add(*prepared, unique_key=options.get("unique_key"))
        register_callback(write)
        return prepared[0]

    def _prepare(self, job_type, payload, run_at=None, unique_key=None, max_attempts=None,
                 timeout=None, queue=None, priority=None) -> tuple:
        if queue is None:
            queue = self.handlers.queues.get(job_type, DEFAULT_QUEUE)
        pair = (check_queue_name(queue), 0 if priority is None else check_priority(priority))
        if unique_key is not None:
            encode_options(unique_key)  # checked as the TSV queue checks it
        if max_attempts is not None:
            check_attempts("max_attempts", max_attempts)
        if timeout is not None:
            check_duration("timeout", timeout)
        now = time.time()
        return (secrets.token_hex(8), checked_job_type(job_type), payload_json(payload),
                checked_run_at(run_at, now), int(now), 0, max_attempts or DEFAULT_MAX_ATTEMPTS,
                timeout, pair)

    def _add(self, job_id, job_type, payload_json, run_at, created_at, attempts, max_attempts,
             timeout, pair: Pair = (DEFAULT_QUEUE, 0), kept: Optional[dict] = None, *,
             unique_key: Optional[str] = None, after: Optional[List[str]] = None,
             allow_failure: bool = False) -> str:
        """Add one checked job to Redis: with ``unique_key``, unless a live job holds it (its
        id is returned); with ``after``, waiting for those jobs (RQ's depends_on)."""
        meta_kept = dict(kept or {})
        if unique_key is not None:
            meta_kept["unique_key"] = unique_key
        write = self._writer(job_id, job_type, payload_json, run_at, created_at, attempts,
                             max_attempts, timeout, pair, meta_kept, after, allow_failure)
        if unique_key is None:
            write()
        else:
            holder = self.unique_keys.add(unique_key, job_id, write)
            if holder != job_id:
                return holder
        if after:  # its dependencies may have ended while it was being added
            links.tell(self.redis, [job_id])
        if hooks.registered:
            hooks.call(hooks.JobEvent("on_enqueue", job_id, job_type, pair[0], pair[1], attempts,
                                      max_attempts, json.loads(payload_json), run_at=run_at))
        return job_id

    def _writer(self, job_id, job_type, payload_json, run_at, created_at, attempts,
                max_attempts, timeout, pair: Pair, kept: dict, after=None,
                allow_failure: bool = False) -> Callable:
        """``write(pipeline=None)``, which adds one checked job to Redis (queued, or scheduled
        for a later ``run_at``), its commands in ``pipeline`` if given; the job's queue is
        recorded first, so that a worker looking finds it."""
        left = max_attempts - attempts - 1
        meta = {"created_at": created_at, "run_at": run_at, "attempts": attempts,
                "max_attempts": max_attempts, "timeout": timeout, **kept}
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
        if after:
            options["depends_on"] = Dependency(jobs=after, allow_failure=allow_failure)
        self.queue_map.record(*pair)
        rq = self.rq_queue(pair)

        def write(pipeline=None) -> None:
            if run_at > time.time():
                rq.enqueue_at(datetime.fromtimestamp(run_at, timezone.utc), DISPATCHER,
                              job_type, payload_json, pipeline=pipeline, **options)
            else:
                rq.enqueue_call(DISPATCHER, (job_type, payload_json), pipeline=pipeline,
                                timeout=options.get("job_timeout"),
                                **{k: v for k, v in options.items() if k != "job_timeout"})
        return write

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
        """As Queue.job_info: what a waiting job waits for (its jobs not ended yet, or its
        batch's counts so far); a running job's progress, from its meta (saved at most every
        half second); who asked it to stop, if anyone has (see stop)."""
        job = self.get_job(job_id)
        if job is None:
            return None
        progress = waits = None
        with self._reaching():
            found = self._fetch(job_id)
            if found is not None and job["status"] == "processing":
                progress = found.meta.get("progress")
            elif found is not None and job["status"] == "pending":
                links_now = links.waiting(self.redis, found)
                waits = None if links_now is None else waiting_for(links_now)
            asked = None if found is None else RedisStops(self.redis, self.name).asked(job_id)
        stop_requested = (asked[1] if asked is not None and job["status"] == "processing"
                          and asked[0] == job["attempts"] else None)
        return dict(job, options=self.job_options(job_id) or {}, waiting=waits,
                    progress=progress if isinstance(progress, dict) else None,
                    stop_requested=stop_requested)

    def stop(self, job_id: str, by: Optional[str] = None) -> bool:
        """As Queue.stop: ask the worker running a job to stop it. Its handler sees
        ``current_job().stop_requested`` within a second; one still running the worker's
        ``stop_grace`` seconds later is interrupted; the job ends ``cancelled``, its error
        ``Stopped by <by>`` (default: this process's user). True if the job is processing
        and the request is recorded (see rq/stops.py); False, as on the file, for a job
        whose worker has died (its keeper no longer says it runs it): RQ's cleanup fails
        that job, and ``retry`` runs it again."""
        by = checked_note(by if by is not None else _user(), "by") or "someone"
        with self._reaching():
            job = self._fetch(job_id)
            try:
                if job is None or read_job(job)["status"] != "processing":
                    return False
            except InvalidJobOperation:
                return False
            stops = RedisStops(self.redis, self.name)
            attempt = stops.alive(job_id)  # the attempt its worker runs (meta may lag)
            if attempt is None:
                return False  # its worker died: nothing would read the request
            stops.ask(job_id, attempt, by)
            return True

    def cancel_job(self, job_id: str) -> bool:
        """As Queue.cancel_job: only a pending job is cancelled; the jobs waiting for it are
        cancelled in turn (or run, with allow_failure), as on the TSV queue."""
        with self._reaching():
            job = self._fetch(job_id)
            try:
                if job is None or read_job(job, self._schedule_of(job))["status"] != "pending":
                    return False
                job.cancel()
            except InvalidJobOperation:
                return False
            self._ended(job)  # its dependents a moment after it: RQ has no one step for both
            return True

    def delete(self, job_id: str) -> bool:
        """As Queue.delete: any job but one a worker runs, removed from Redis; the jobs
        waiting for it are told first (cancelled, saying it was deleted, or run, with
        allow_failure)."""
        with self._reaching():
            job = self._fetch(job_id)
            try:
                if job is None or read_job(job, self._schedule_of(job))["status"] == "processing":
                    return False
            except InvalidJobOperation:
                return False
            self._ended(job, links.DELETED)
            drop_executions(self.redis, job_id)  # a dead worker's, else delete() fails
            job.delete()
            return True

    def _ended(self, job, how: Optional[str] = None) -> None:
        """A job of ours has ended: free its unique key, forget any request to stop it, and
        tell the jobs waiting for it."""
        self.unique_keys.release(job.meta.get("unique_key"), job.id)
        RedisStops(self.redis, self.name).forget(job.id)
        links.tell(self.redis, links.dependents_of(self.redis, job.id),
                   {job.id: how} if how else {})

    def retry_job(self, job_id: str) -> bool:
        """As Queue.retry_job: a failed or cancelled job goes back to pending, due now, with
        fresh attempts (its last error and its tracebacks kept). In Redis it is added again,
        under its id, with its type, payload and options; False for any other job.

        The old job goes and the new one comes in one MULTI/EXEC, under a WATCH of the job
        and of its unique key: of two retries at once one adds it and the other, seeing it
        pending, returns False; an enqueue of its key at the same moment either sees the
        retried job hold it, or takes it first (the retried job then keeps no key). Its stop
        request, if any, goes in the same step: it was for an attempt that has ended."""
        with self._reaching():
            job = self._fetch(job_id)
            if job is None:
                return False
            stops = RedisStops(self.redis, self.name)
            with self.redis.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(job.key)
                        job = self._fetch(job_id)
                        shown = None if job is None else read_job(job, self._schedule_of(job))
                        if shown is None or shown["status"] not in ("failed", "cancelled"):
                            return False
                        drop_executions(self.redis, job_id)  # a dead worker's: see jobs.py
                        meta = job.meta
                        kept = {key: meta[key] for key in ("error", "tracebacks") if key in meta}
                        unique_key = meta.get("unique_key")
                        if isinstance(unique_key, str):
                            pipe.watch(self.unique_keys.key(unique_key))
                            if self.unique_keys.holder(unique_key) in (None, job_id):
                                kept["unique_key"] = unique_key  # else another job took it
                        pair = (meta.get("queue", DEFAULT_QUEUE), meta.get("priority", 0))
                        write = self._writer(
                            job_id, shown["type"], job.args[1], int(time.time()),
                            meta.get("created_at", 0), 0,
                            meta.get("max_attempts", DEFAULT_MAX_ATTEMPTS), meta.get("timeout"),
                            pair, kept)
                        pipe.multi()
                        job.delete(pipeline=pipe)  # and RQ's links: a retried job waits for nothing
                        if "unique_key" in kept:
                            pipe.set(self.unique_keys.key(unique_key), job_id)
                        pipe.delete(stops.key(job_id))
                        write(pipe)
                        pipe.execute()
                        break
                    except InvalidJobOperation:  # deleted while being read
                        return False
                    except WatchError:  # retried, deleted or its key taken meanwhile: again
                        continue
        if hooks.registered:
            hooks.call(hooks.JobEvent("on_enqueue", job_id, shown["type"], pair[0], pair[1], 0,
                                      meta.get("max_attempts", DEFAULT_MAX_ATTEMPTS),
                                      shown["payload"], run_at=int(time.time())))
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
                    if job.get_status() == "finished":
                        links.unlink_completed(self.redis, job_id)
                    drop_executions(self.redis, job_id)
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

    def throughput(self, step: int = 60, steps: int = 60) -> Dict[str, Any]:
        """Refused: the Redis backend keeps no counts per minute (RQ's workers count their
        jobs in all, shown by ``rq info``)."""
        backend.require(self, backend.WORKERS, "the jobs finished per minute (throughput)",
                        "see each RQ worker's totals with `rq info --url URL`")
        return {}

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
                       queues=queues)
        check_number("stop_grace", stop_grace)
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
                       queues=queues)
        return self._work(handlers, True, max_jobs, max_seconds, timeout, queues, stop_grace)

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
                       handle_signals, queues)
        return self._work(handlers, False, max_jobs, max_seconds, timeout, queues, stop_grace)

    def _work(self, handlers, burst: bool, max_jobs, max_seconds, timeout,
              queues: QueueChoice, stop_grace: float = backend.DEFAULT_STOP_GRACE) -> int:
        if schedules_of(handlers):  # declared with dbbasic_queue.periodic before the URL was set
            backend.require(self, backend.PERIODIC, "@periodic (periodic jobs)", WITHOUT_PERIODIC)
        worker = DispatchWorker(self.rq_queue, self.queue_map, Scope.of(None, queues).queues,
                                handlers, Bounds(max_jobs, max_seconds), timeout, stop_grace)
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


def _step_options(options: Mapping[str, Any], own: Mapping[str, Any]) -> Dict[str, Any]:
    """The enqueue options of a job of a chain or batch: its own over the group's."""
    merged = {**options, **own}
    if "unique_key" in merged or "depends_on" in merged:
        raise TypeError("jobs of a chain or batch take no unique_key or depends_on")
    if {"concurrency_key", "concurrency_limit", "rate_limit", "rate_key"} & set(merged):
        raise UnsupportedError("concurrency_key and rate_limit are not supported on the RQ "
                               "backend: RQ counts no starts by key")
    return merged


def _user() -> str:
    """This process's user name, for a stop request's ``by``."""
    import getpass
    try:
        return getpass.getuser()
    except Exception:  # no name for this uid (a container): its number
        import os
        return f"uid {os.getuid()}"


def _without_password(url: str) -> str:
    """The URL with its password masked, fit for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def migrate(source: Queue, target: RQQueue, dry_run: bool = False) -> List[Job]:
    """Move the pending jobs of a TSV queue (due and scheduled) into Redis, keeping their
    ids, run_at, attempts and options, unique key included (a job whose key a job in Redis
    holds already is not added, as enqueue would not add it; its error names that job). A
    job is marked moved in the TSV file (``cancelled``, error ``moved to redis://...``) only
    once Redis has it, and a job Redis has already is not added again: an interrupted
    migration loses nothing, and a second run duplicates nothing. Returns the jobs moved
    (or, with ``dry_run``, that would be)."""
    pending, linked = [], 0
    for _, line in source.table.lines():
        try:
            job = parse_line(line)
        except CorruptLineError:
            continue  # reported by the TSV worker; stays in the file
        if job.status == "pending" and set(decode_options(job.options)) & LINKS:
            linked += 1  # its links are the file's: it stays, to run with them
        elif job.status == "pending":
            pending.append(job)
    if linked:
        logger.warning("left %s in %s: they wait for other jobs, or others wait for them "
                       "(depends_on, chain, batch), links migrate does not carry over; let "
                       "them run there", plural(linked, "pending job"), source.path)
    if dry_run:
        return pending
    twins: Dict[str, str] = {}  # job id -> the job in Redis holding its unique key
    with target._reaching():
        for job in pending:
            if target._fetch(job.id) is None:
                options = decode_options(job.options)
                unique_key = options.get("unique_key")
                held = target._add(
                    job.id, job.type, job.payload, job.run_at, job.created_at, job.attempts,
                    max(options.get("max_attempts") or DEFAULT_MAX_ATTEMPTS, job.attempts + 1),
                    options.get("timeout"), queue_and_priority(options),
                    unique_key=unique_key if isinstance(unique_key, str) else None)
                if held != job.id:  # as enqueue would: the job waiting there stands for it
                    twins[job.id] = held
    moved, where = {job.id for job in pending}, _without_password(target.url)

    def note(job_id: str) -> str:
        if job_id in twins:
            return f"moved to {where}: job {twins[job_id]} there has its unique key"
        return f"moved to {where}"
    source.update_each(lambda job: job.evolve(status="cancelled", error=note(job.id))
                       if job.id in moved and job.status == "pending" else None)
    return pending


def migrate_back(source: RQQueue, target: Queue, dry_run: bool = False) -> List[Dict[str, Any]]:
    """Move the pending jobs of Redis (queued and scheduled) into a TSV queue, keeping their
    ids, type, payload, run_at, attempts, max_attempts, timeout, unique key, queue and
    priority; jobs that wait for others, or that others wait for, stay in Redis. A job
    is appended to the file unless the file has its id already, or a pending or processing
    job there holds its unique key (as the file's enqueue would not add it; its error in
    Redis names that job), and only then cancelled in Redis (its error saying where it went): an interrupted migration loses nothing, and a
    second run moves nothing. Returns the jobs moved (or, with ``dry_run``, that would be),
    as get_job dicts."""
    with source._reaching():
        waiting, linked = [], 0
        for rq_job, schedule in read_all(source.all_rq_queues()):
            try:
                shown = read_job(rq_job, schedule, refresh=False)
            except ForeignJobError as error:
                logger.warning("%s; left in Redis", error)
                continue
            if shown["status"] != "pending":
                continue
            if (rq_job.get_status(refresh=False) == "deferred"
                    or links.dependents_of(source.redis, rq_job.id)):
                linked += 1  # its links are RQ's: it stays, to run with them
            else:
                waiting.append((rq_job, shown))
    if linked:
        logger.warning("left %s in Redis: they wait for other jobs, or others wait for them "
                       "(depends_on, chain, batch), links migrate does not carry over; let "
                       "them run there", plural(linked, "pending job"))
    if dry_run:
        return [shown for _, shown in waiting]
    note = f"moved to {target.describe()}"
    file_keys = FileUniqueKeys()  # which file job holds a key, read under the file's lock
    for rq_job, shown in waiting:
        meta = rq_job.meta
        unique_key = meta.get("unique_key")
        try:  # as the file's own enqueue checks them: anyone may have written Redis
            options = encode_options(unique_key if isinstance(unique_key, str) else None,
                                     meta.get("max_attempts"), meta.get("timeout"),
                                     meta.get("queue"), meta.get("priority") or None)
            line = job_line(shown["id"], checked_job_type(shown["type"]),
                            payload_json(shown["payload"]), PENDING, int(shown["created_at"]),
                            int(shown["run_at"]), int(shown["attempts"]),
                            one_line(shown["error"] or ""), "", options)
        except (TypeError, ValueError) as error:
            logger.warning("job %s in Redis: %s; left there", shown["id"], error)
            continue
        prefix = shown["id"].encode() + b"\t"

        def already(fd: int) -> Optional[str]:
            if has_line(fd, prefix):
                return shown["id"]  # moved by an earlier run
            return file_keys.job_with(fd, unique_key) if isinstance(unique_key, str) else None
        twin = target.table.append(line, durable=target.durable, unless=already)
        with source._reaching():  # as the file's enqueue would: its job stands for this one
            rq_job.meta["error"] = (note if twin in (None, shown["id"]) else
                                    f"{note}: job {twin} there has its unique key")
            rq_job.save_meta()
            rq_job.cancel()
            source.unique_keys.release(unique_key, rq_job.id)
    return [shown for _, shown in waiting]
