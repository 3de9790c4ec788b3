"""The TSV queue's statistics: counts by status and type, latency, next run, failures.

The queue file is parsed line by line; archive files hold only completed and cancelled jobs
that passed their judgement when they were moved, so they are counted from a cheap look at
each line's type and status (a line that does not look like a job counts as corrupt).
"""

import logging
from typing import Any, Dict

from .errors import CorruptLineError, QueueError
from .firing import listing
from .job import STATUSES, parse_line

logger = logging.getLogger("dbbasic_queue")

_STATUS_BYTES = {status.encode(): status for status in STATUSES}


def queue_stats(queue) -> Dict[str, Any]:
    """See Queue.stats; ``queue`` is a TSV Queue."""
    now = queue.clock()
    by_status = dict.fromkeys(STATUSES, 0)
    by_type: Dict[str, Dict[str, int]] = {}
    oldest_due = next_run = None
    failed_last_hour = retrying = corrupt = 0
    for _, line in queue.table.lines():
        try:
            job = parse_line(line)
        except CorruptLineError:
            corrupt += 1
            continue
        by_status[job.status] += 1
        counts = by_type.setdefault(job.type, dict.fromkeys(STATUSES, 0))
        counts[job.status] += 1
        if job.status == "pending":
            retrying += job.attempts > 0
            if job.run_at <= now:
                oldest_due = job.run_at if oldest_due is None else min(oldest_due, job.run_at)
            else:
                next_run = job.run_at if next_run is None else min(next_run, job.run_at)
        elif job.status == "failed" and job.run_at >= now - 3600:
            failed_last_hour += 1
    archived = {"files": 0, "jobs": 0, "size_bytes": 0}
    for _, path in queue.archive.files():
        archived["files"] += 1
        try:
            archived["size_bytes"] += path.stat().st_size
        except FileNotFoundError:
            continue
        for _, line in queue.archive.table_of(path).lines():
            fields = line.split(b"\t", 4)
            status = _STATUS_BYTES.get(fields[3]) if len(fields) == 5 else None
            if status is None:
                corrupt += 1
                continue
            archived["jobs"] += 1
            by_status[status] += 1
            job_type = fields[1].decode("utf-8", "replace")
            by_type.setdefault(job_type, dict.fromkeys(STATUSES, 0))[status] += 1
    size = queue.path.stat().st_size if queue.path.exists() else 0
    return {"file": str(queue.path), "size_bytes": size, "jobs": sum(by_status.values()),
            "by_status": by_status, "by_type": dict(sorted(by_type.items())),
            "oldest_due_seconds": None if oldest_due is None else max(0.0, now - oldest_due),
            "next_run_at": next_run, "retrying": retrying,
            "failed_last_hour": failed_last_hour, "corrupt_lines": corrupt,
            "archived": archived, "schedules": _schedules(queue)}


def _schedules(queue):
    """The schedules as the workers last recorded them (see firing.listing); None, with a
    warning, if the state file cannot be read."""
    try:
        return listing(queue)
    except QueueError as error:
        logger.warning("%s", error)
        return None
