"""The queue's figures in Prometheus's text format, for ``dbbasic-queue metrics`` and the
dashboard's ``/metrics``: what ``stats()`` counts (jobs by status, by type and by queue, the
oldest due job's wait, failures, corrupt lines, archived jobs) and what ``workers()`` knows
(workers by state; each worker's last sighting, jobs in hand and counts of finished jobs,
counters that only grow while the worker's line lives).

Every label value is escaped as the format asks (backslash, double quote, line feed), so a
job type or a host name can never break a line or add a metric.
"""

import re
from typing import Any, Dict, Iterable, List, Tuple

from .backend import WORKERS

PREFIX = "dbbasic_queue_"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def prometheus_text(queue) -> str:
    """The metrics of ``queue`` (any backend; workers where it keeps them), as one text."""
    stats = queue.stats()
    out: List[str] = []

    def family(name: str, kind: str, help_text: str,
               samples: Iterable[Tuple[Dict[str, Any], float]]) -> None:
        out.append(f"# HELP {PREFIX}{name} {help_text}")
        out.append(f"# TYPE {PREFIX}{name} {kind}")
        for labels, value in samples:
            out.append(f"{PREFIX}{name}{_labels(labels)} {_number(value)}")

    family("jobs", "gauge", "Jobs by status, in the queue file and its archive files.",
           (({"status": status}, count) for status, count in stats["by_status"].items()))
    family("type_jobs", "gauge", "Jobs by type and status.",
           (({"type": job_type, "status": status}, count)
            for job_type, counts in stats["by_type"].items() for status, count in counts.items()))
    family("queue_jobs", "gauge", "Pending and processing jobs by queue.",
           (({"queue": name, "status": status}, count)
            for name, counts in (stats.get("queues") or {}).items()
            for status, count in counts.items()))
    oldest = stats.get("oldest_due_seconds")
    family("oldest_due_seconds", "gauge",
           "How long the oldest due job has waited, in seconds (0 when none waits).",
           [({}, oldest or 0)])
    family("retrying_jobs", "gauge", "Pending jobs that failed before and wait for a retry.",
           [({}, stats.get("retrying", 0))])
    family("failed_last_hour", "gauge", "Jobs that failed for good in the last hour.",
           [({}, stats.get("failed_last_hour", 0))])
    family("corrupt_lines", "gauge", "Lines that do not read as jobs (left as they are).",
           [({}, stats.get("corrupt_lines", 0))])
    throughput = stats.get("throughput")
    if throughput is not None:
        family("finished_last_hour", "gauge",
               "Jobs finished in the last hour (by whole minutes), by outcome.",
               (({"outcome": outcome}, count)
                for outcome, count in throughput["last_hour"].items()))
    archived = stats.get("archived") or {}
    if archived:
        family("archived_jobs", "gauge", "Finished jobs in the archive files.",
               [({}, archived.get("jobs", 0))])
    if WORKERS in queue.capabilities:
        workers = queue.workers()
        states: Dict[str, int] = {"alive": 0, "late": 0, "gone": 0}
        for worker in workers:
            states[worker["state"]] = states.get(worker["state"], 0) + 1
        family("workers", "gauge", "Workers seen, by state (alive, late, gone).",
               (({"state": state}, count) for state, count in states.items()))
        family("worker_last_seen_timestamp_seconds", "gauge",
               "When each worker was last seen (Unix time).",
               (({"worker": worker["worker"], "kind": worker["kind"]}, worker["last_seen"])
                for worker in workers))
        family("worker_in_hand_jobs", "gauge", "The jobs each worker held when last seen.",
               (({"worker": worker["worker"]}, worker["in_hand"]) for worker in workers))
        family("worker_jobs_total", "counter", "Jobs each worker finished, by outcome.",
               (({"worker": worker["worker"], "outcome": outcome}, worker[outcome])
                for worker in workers for outcome in ("completed", "failed", "retried")))
    return "\n".join(out) + "\n"


def _labels(labels: Dict[str, Any]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_escaped(str(value))}"' for name, value in labels.items()) + "}"


def _escaped(value: str) -> str:
    """A label value as the format asks (backslash, double quote, line feed), its other
    control characters replaced by U+FFFD: the text also reaches terminals."""
    value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return _CONTROL.sub("\ufffd", value)


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(int(value))
