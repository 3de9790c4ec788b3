"""The jobs of an RQ queue, listed and counted from RQ's registries, changing nothing.

RQ keeps a job's id in its RQ queue's list while it waits (one RQ queue per queue and
priority of ours, see rq/queues.py), then in one registry per state:
scheduled, started, finished, failed, canceled, deferred. A listing reads the ids from all
of them (without RQ's cleanup, which would move jobs), fetches the jobs in batches, and
reads each with ``rq_jobs.read_job``: foreign jobs are counted, never loaded.
"""

import logging
from typing import Any, Dict, Iterator, List, Tuple

from rq import Queue as RedisJobQueue

from ..model.job import STATUSES
from ..model.queues import DEFAULT_QUEUE
from .jobs import SERIALIZER, ForeignJobError, SafeJob, read_job

logger = logging.getLogger("dbbasic_queue")

BATCH = 500  # jobs fetched from Redis in one round trip


def each_job(rq_queue: RedisJobQueue) -> Iterator[SafeJob]:
    """Every job of one RQ queue still in Redis, once, in no particular order."""
    ids = rq_queue.get_job_ids()
    for registry in (rq_queue.scheduled_job_registry, rq_queue.started_job_registry,
                     rq_queue.finished_job_registry, rq_queue.failed_job_registry,
                     rq_queue.canceled_job_registry, rq_queue.deferred_job_registry):
        ids += registry.get_job_ids(cleanup=False)
    ids = list(dict.fromkeys(ids))
    for start in range(0, len(ids), BATCH):
        for job in SafeJob.fetch_many(ids[start:start + BATCH], connection=rq_queue.connection,
                                      serializer=SERIALIZER):
            if job is not None:  # expired since its id was read
                yield job


def read_all(rq_queues: List[RedisJobQueue]) -> Iterator[Tuple[SafeJob, Any]]:
    """Every job of the RQ queues (one per queue and priority), with its queue's schedule."""
    for rq_queue in rq_queues:
        schedule = rq_queue.scheduled_job_registry
        for job in each_job(rq_queue):
            yield job, schedule


def job_dicts(rq_queues: List[RedisJobQueue]) -> List[Dict[str, Any]]:
    """Every job of ours as a get_job dict, oldest first; foreign jobs are logged."""
    found = []
    for job, schedule in read_all(rq_queues):
        try:
            found.append(read_job(job, schedule, refresh=False))
        except ForeignJobError as error:
            logger.warning("%s", error)
    return sorted(found, key=lambda job: job["created_at"])


def summary(rq_queues: List[RedisJobQueue], now: float) -> Dict[str, Any]:
    """The TSV queue's stats for the RQ queues of one RQQueue; ``corrupt_lines`` counts the
    foreign jobs."""
    by_status = dict.fromkeys(STATUSES, 0)
    by_type: Dict[str, Dict[str, int]] = {}
    by_queue: Dict[str, Dict[str, int]] = {DEFAULT_QUEUE: {"pending": 0, "processing": 0}}
    due, scheduled = [], []
    failed_last_hour = retrying = foreign = 0
    for rq_job, schedule in read_all(rq_queues):
        try:
            job = read_job(rq_job, schedule, refresh=False)
        except ForeignJobError:
            foreign += 1
            continue
        by_status[job["status"]] += 1
        by_type.setdefault(job["type"], dict.fromkeys(STATUSES, 0))[job["status"]] += 1
        if job["status"] in ("pending", "processing"):
            queue = rq_job.meta.get("queue") or DEFAULT_QUEUE
            by_queue.setdefault(queue, {"pending": 0, "processing": 0})[job["status"]] += 1
        if job["status"] == "pending":
            retrying += job["attempts"] > 0
            (due if job["run_at"] <= now else scheduled).append(job["run_at"])
        elif job["status"] == "failed" and job["run_at"] >= now - 3600:
            failed_last_hour += 1
    return {"jobs": sum(by_status.values()), "by_status": by_status,
            "by_type": dict(sorted(by_type.items())),
            "oldest_due_seconds": max(0.0, now - min(due)) if due else None,
            "next_run_at": min(scheduled) if scheduled else None, "retrying": retrying,
            "failed_last_hour": failed_last_hour, "corrupt_lines": foreign,
            "queues": dict(sorted(by_queue.items()))}
