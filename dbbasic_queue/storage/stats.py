"""The TSV queue's statistics: counts by status and type, latency, next run, failures.

Every line, of the queue file and of the archive files, is judged by ``job.parse_line`` as
every other reader judges it, so a line corrupt to ``get_job`` is corrupt here too; a job in
two files (a kill in the middle of a move leaves it so) counts once, as ``list`` shows it.
"""

from typing import Any, Dict

from ..errors import CorruptLineError
from ..model.job import ACTIVE, FAILED, PENDING, STATUSES, line_id, parse_line, peek_listing
from ..model.options import decode_options
from ..model.queues import DEFAULT_QUEUE, queue_and_priority, waiting_message
from ..model.words import age



def queue_stats(queue) -> Dict[str, Any]:
    """See Queue.stats; ``queue`` is a TSV Queue."""
    now = queue.clock()
    by_status = dict.fromkeys(STATUSES, 0)
    by_type: Dict[str, Dict[str, int]] = {}
    oldest_due = next_run = None
    failed_last_hour = retrying = corrupt = 0
    by_queue: Dict[str, Dict[str, int]] = {}  # the jobs waiting or running, by queue
    waiting: Dict[str, Dict[str, Any]] = {}  # due jobs no worker that looked could run
    seen = set()  # ids counted: a kill mid-move leaves a job in two files (the live one wins)
    for _, line in queue.table.lines():
        try:
            job = parse_line(line)
        except CorruptLineError:
            corrupt += 1
            continue
        seen.add(job.id)
        by_status[job.status] += 1
        counts = by_type.setdefault(job.type, dict.fromkeys(STATUSES, 0))
        counts[job.status] += 1
        if job.status in ACTIVE:
            name = queue_and_priority(decode_options(job.options))[0] if job.options else DEFAULT_QUEUE
            by_queue.setdefault(name, dict.fromkeys(ACTIVE, 0))[job.status] += 1
        if job.status == PENDING:
            retrying += job.attempts > 0
            if job.run_at <= now:
                oldest_due = job.run_at if oldest_due is None else min(oldest_due, job.run_at)
                if job.error == waiting_message(job.type):
                    entry = waiting.setdefault(job.type, {"jobs": 0, "oldest_seconds": 0.0})
                    entry["jobs"] += 1
                    entry["oldest_seconds"] = max(entry["oldest_seconds"], now - job.run_at)
            else:
                next_run = job.run_at if next_run is None else min(next_run, job.run_at)
        elif job.status == FAILED and job.run_at >= now - 3600:
            failed_last_hour += 1
    archived = {"files": 0, "jobs": 0, "size_bytes": 0}
    for _, path in queue.archive.files(newest_first=True):
        archived["files"] += 1
        try:
            archived["size_bytes"] += path.stat().st_size
        except FileNotFoundError:
            continue
        for _, line in queue.archive.table_of(path).lines():
            # The one judgement, as get_job and list make it: peek_listing is parse_line's
            # verdict without building a Job, and says None where only parse_line can tell.
            peek = peek_listing(line)
            if peek is None:
                try:
                    job = parse_line(line)
                except CorruptLineError:
                    corrupt += 1
                    continue
                job_id, job_type, status = job.id, job.type, job.status
            else:
                job_id, (job_type, status) = line_id(line).decode(), peek[:2]
            if job_id in seen:
                continue
            seen.add(job_id)
            archived["jobs"] += 1
            by_status[status] += 1
            by_type.setdefault(job_type, dict.fromkeys(STATUSES, 0))[status] += 1
    size = queue.path.stat().st_size if queue.path.exists() else 0
    return {"file": str(queue.path), "size_bytes": size, "jobs": sum(by_status.values()),
            "by_status": by_status, "by_type": dict(sorted(by_type.items())),
            "oldest_due_seconds": None if oldest_due is None else max(0.0, now - oldest_due),
            "next_run_at": next_run, "retrying": retrying,
            "failed_last_hour": failed_last_hour, "corrupt_lines": corrupt,
            "archived": archived, "queues": dict(sorted(by_queue.items())),
            "waiting_for_handler": dict(sorted(waiting.items())), "paused": queue.paused()}


def workers_summary(workers, now: float) -> Dict[str, Any]:
    """What ``stats`` says of the registry: how many workers are alive, late or gone, when
    one last ran, and a warning when none was seen within twice its usual interval (a cron
    that stopped looks like a quiet queue otherwise)."""
    states = {state: 0 for state in ("alive", "late", "gone")}
    for worker in workers:
        states[worker["state"]] += 1
    last_seen = max((worker["last_seen"] for worker in workers), default=None)
    warning = None
    if workers and not states["alive"]:
        usual = workers[0]["interval"] or 60
        warning = (f"no worker has been seen for {age(now - last_seen)} (the last "
                   f"one seen ran every {age(usual)}): is cron, or the loop worker, "
                   f"still running?")
    return dict(states, seen=len(workers), last_seen=last_seen, warning=warning)
