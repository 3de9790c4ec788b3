"""Jobs that wait for jobs on Redis: RQ's own dependencies, ending as on the TSV queue.

RQ holds the links: a job enqueued with ``depends_on`` (``Dependency(jobs, allow_failure)``)
is ``deferred``, and RQ's worker queues it once every job it depends on has finished (or
failed, with ``allow_failure``). What RQ lacks, and docs/workflows.md promises, is done here:

- a job whose dependency failed for good, was stopped, cancelled or deleted is cancelled,
  its error saying which and why (RQ would keep it deferred for ever), and so on down;
- a job allowed to fail whose dependency was cancelled or stopped is queued once they have
  all ended (RQ would keep it deferred too);
- a batch's ``on_complete`` job depends on its members with ``allow_failure``; just before
  it runs, the counts of its members by how they ended go into its payload.

``settle`` decides one deferred job from the statuses of the jobs it depends on. It is called
where a job of ours ends (the worker, cancel_job, delete), once after a dependent is written
(its dependencies may have ended meanwhile), and by the worker's sweep of the deferred jobs,
for jobs that RQ's own tools ended: a bounded batch of them per sweep, read pipelined, only
those with a dependency ended settled one by one (see ``sweep``). Queueing a deferred job is one transaction that watches
it and takes it out of its dependencies' dependents sets, which RQ's own queueing watches: so
RQ and this module never both queue it, and two workers settling it queue it once.
"""

import json
import logging
import zlib
from typing import Dict, Iterable, List, Mapping, Optional

from redis.exceptions import ResponseError, WatchError
from rq import Queue as RedisJobQueue
from rq.exceptions import InvalidJobOperation, NoSuchJobError

from ..model.checks import payload_json
from ..model.dependencies import BATCH_COUNTS
from .jobs import SERIALIZER, SafeJob, refusal

logger = logging.getLogger("dbbasic_queue")

# A dependency gone from Redis was deleted (by delete(), which tells first, or by RQ's own
# tools): a completed one stays for its result's 7 days, and purge takes a completed job out
# of its dependents' links before it goes.
DELETED = "deleted"
# How a dependency that did not complete ended, in the words of the error of the jobs
# cancelled for it ("Cancelled: job ID, which it depends on, failed for good").
NOT_COMPLETED = {"failed": "failed for good", "stopped": "was stopped", "canceled": "was cancelled",
                 DELETED: "was deleted"}
ENDED = frozenset({"finished"}) | frozenset(NOT_COMPLETED)
SWEEP_BATCH = 2000  # deferred jobs of one RQ queue a sweep looks at (see sweep)
BATCH = 500  # jobs read from Redis in one pipelined round trip
BATCH_STATUS = {"finished": "completed", "failed": "failed", "stopped": "failed"}  # else cancelled


def dependencies_of(connection, job: SafeJob) -> List[str]:
    """The ids of the jobs ``job`` depends on (RQ's set of them)."""
    return sorted(member.decode() for member in connection.smembers(job.dependencies_key))


def dependents_of(connection, job_id: str) -> List[str]:
    """The ids of the jobs waiting for job ``job_id`` (RQ's set of them)."""
    key = SafeJob(job_id, connection=connection).dependents_key
    return sorted(member.decode() for member in connection.smembers(key))


def statuses(connection, job_ids: Iterable[str],
             told: Mapping[str, str]) -> Dict[str, Optional[str]]:
    """RQ's status of each job (DELETED for one gone from Redis); ``told`` overrides them."""
    job_ids = list(job_ids)
    with connection.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(SafeJob.key_for(job_id), "status")
        found = pipe.execute()
    return {job_id: told.get(job_id) or (DELETED if status is None else status.decode())
            for job_id, status in zip(job_ids, found)}


def batch_counts(connection, job: SafeJob) -> Dict[str, int]:
    """How a batch's members ended (size, completed, failed, cancelled): a member gone from
    Redis counts as cancelled, as a deleted member does on the TSV queue."""
    ended = statuses(connection, dependencies_of(connection, job), {})
    counts = dict.fromkeys(BATCH_COUNTS, 0)
    for status in ended.values():
        if status in ENDED:  # a member still to run counts for nothing yet
            counts[BATCH_STATUS.get(status, "cancelled")] += 1
    return {"size": len(ended), **counts}


def waiting(connection, job: SafeJob) -> Optional[Dict[str, object]]:
    """What a deferred job of ours waits for, as the TSV queue's options say it (``after``,
    the jobs not ended yet, or ``batch``, its counts so far), for job_info; else None."""
    if job.get_status(refresh=False) != "deferred":
        return None
    try:
        return _waiting(connection, job)
    except ResponseError as error:  # its links are not RQ's: it cannot be said
        logger.warning("job %s: cannot read what it waits for (%s)", job.id, error)
        return None


def _waiting(connection, job: SafeJob) -> Dict[str, object]:
    if isinstance(job.meta.get("batch"), dict):
        counts = batch_counts(connection, job)
        return {"batch": dict(counts, size=job.meta["batch"].get("size", counts["size"]))}
    ended = statuses(connection, dependencies_of(connection, job), {})
    return {"after": [job_id for job_id, status in ended.items() if status not in ENDED]}


def put_batch_counts(connection, job: SafeJob) -> None:
    """Before a batch's on_complete job runs: its members' counts into its payload, as
    ``payload["batch"]`` (id, size, completed, failed, cancelled), saved with the job."""
    job_type, payload_text = job.args
    payload = json.loads(payload_text)
    payload["batch"] = {"id": job.id, **batch_counts(connection, job)}
    job.args = [job_type, payload_json(payload)]
    connection.hset(job.key, "data", zlib.compress(job.data))  # as RQ's Job.save writes it


def settle(connection, job_id: str, told: Mapping[str, str] = {}) -> List[str]:
    """Decide deferred job ``job_id`` of ours from how its dependencies ended (``told``
    overrides what Redis says, for a job about to be deleted): cancel it, queue it, or leave
    it waiting. Returns the ids of the jobs to settle next (those waiting for it, if it was
    cancelled); [] if it is not a deferred job of ours."""
    key = SafeJob.key_for(job_id)
    with connection.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                try:
                    job = SafeJob.fetch(job_id, connection=connection, serializer=SERIALIZER)
                except NoSuchJobError:
                    return []
                if job.get_status(refresh=False) != "deferred" or refusal(job) is not None:
                    return []
                depends = dependencies_of(connection, job)
                ended = statuses(connection, depends, told)
                failed = [(other, ended[other]) for other in depends
                          if ended[other] in NOT_COMPLETED]
                if failed and not job.allow_dependency_failures:
                    pipe.reset()
                    other, how = failed[0]
                    return cancel(connection, job, f"Cancelled: job {other}, which it depends "
                                                   f"on, {NOT_COMPLETED[how]}")
                if not all(status in ENDED for status in ended.values()):
                    return []
                pipe.multi()
                origin = RedisJobQueue(job.origin, connection=connection, serializer=SERIALIZER,
                                       job_class=SafeJob)
                origin.deferred_job_registry.remove(job, pipeline=pipe)
                for other in depends:
                    pipe.srem(SafeJob(other, connection=connection).dependents_key, job_id)
                origin._enqueue_job(job, pipeline=pipe)  # RQ's own, as its scheduler uses it
                pipe.execute()
                logger.debug("job %s: its dependencies have ended; queued", job_id)
                return []
            except WatchError:  # queued or cancelled meanwhile: look again
                continue


def cancel(connection, job: SafeJob, error: str) -> List[str]:
    """Cancel a job waiting for another, keeping why in its meta; the ids waiting for it."""
    job.meta["error"] = error
    job.save_meta()
    try:
        job.cancel()
    except InvalidJobOperation:  # cancelled by another worker meanwhile: it told them
        return []
    logger.info("job %s: %s", job.id, error)
    return dependents_of(connection, job.id)


def tell(connection, job_ids: Iterable[str], told: Mapping[str, str] = {}) -> None:
    """Settle ``job_ids``, and in turn the jobs waiting for any cancelled, down the chain. A
    job whose keys are not what RQ writes (WRONGTYPE) is logged and passed over."""
    todo, seen = list(job_ids), set()
    while todo:
        job_id = todo.pop()
        if job_id not in seen:
            seen.add(job_id)
            try:
                todo.extend(settle(connection, job_id, told))
            except ResponseError as error:
                logger.warning("job %s: cannot settle it, its links in Redis are not RQ's "
                               "(%s); passed over, the others go on", job_id, error)


def unlink_completed(connection, job_id: str) -> None:
    """Before a completed job is purged: the jobs waiting for it no longer count it (it
    completed), so that its absence does not read as a deletion."""
    for other in dependents_of(connection, job_id):
        connection.srem(SafeJob(other, connection=connection).dependencies_key, job_id)


def sweep(rq_queues: Iterable[RedisJobQueue], batch: int = SWEEP_BATCH) -> int:
    """Settle the deferred jobs of these RQ queues whose dependencies have ended: the safety
    net for the jobs whose dependencies RQ's own tools (or its cleanup of a dead worker's
    job) ended. Each sweep looks at the next ``batch`` deferred jobs of each RQ queue, from
    where the last sweep (of any worker) stopped, wrapping round, in two pipelined round
    trips per 500 jobs (their dependencies, then those dependencies' statuses), and settles
    only those with a dependency ended. A job whose links are not RQ's (a Redis key of
    another type) is logged and passed over. Returns how many jobs it looked at."""
    looked = 0
    for rq_queue in rq_queues:
        connection = rq_queue.connection
        where = f"{rq_queue.name}/sweep"  # the offset the next sweep starts from
        registry = rq_queue.deferred_job_registry
        start = int(connection.get(where) or 0)
        ids = [member.decode() for member in
               connection.zrange(registry.key, start, start + batch - 1)]
        if not ids and start:  # past the end: round again from the first
            start = 0
            ids = [member.decode() for member in connection.zrange(registry.key, 0, batch - 1)]
        connection.set(where, start + len(ids) if len(ids) == batch else 0)
        looked += len(ids)
        for chunk in range(0, len(ids), BATCH):
            _settle_ended(connection, ids[chunk:chunk + BATCH])
    return looked


def _settle_ended(connection, job_ids: List[str]) -> None:
    """Settle those of ``job_ids`` (deferred) with a dependency ended, or none left."""
    with connection.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.smembers(SafeJob(job_id, connection=connection).dependencies_key)
        found = pipe.execute(raise_on_error=False)
    depends: Dict[str, List[str]] = {}
    for job_id, members in zip(job_ids, found):
        if isinstance(members, Exception):
            logger.warning("job %s: its dependencies cannot be read (%s); passed over, the "
                           "others go on", job_id, members)
        else:
            depends[job_id] = [member.decode() for member in members]
    others = sorted({other for members in depends.values() for other in members})
    with connection.pipeline(transaction=False) as pipe:
        for other in others:
            pipe.hget(SafeJob.key_for(other), "status")
        status = dict(zip(others, pipe.execute(raise_on_error=False)))
    ended = [job_id for job_id, members in depends.items()
             if not members or any(_ended(status[other]) for other in members)]
    tell(connection, ended)


def _ended(status) -> bool:
    """Whether an HGET of a job's status says it has ended (or is gone, or is not a job)."""
    return (status is None or isinstance(status, Exception)
            or status.decode("utf-8", "replace") in ENDED)
