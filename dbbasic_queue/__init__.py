"""dbbasic-queue: background jobs for a Python app on one server, kept in one TSV file.

Every job runs at least once, however workers overlap or die; a job runs twice only if its
worker died in the second between the handler returning and the result being written.
The four published functions use a default Queue at ``data/queue.tsv`` (relative to the
current directory at each call; ``DBBASIC_QUEUE_FILE`` overrides it).
"""

import os
from typing import Any, Callable, Dict, Mapping, Optional

from .errors import CorruptLineError, QueueError
from .queue import (DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS, DEFAULT_PATH, Queue,
                    retry_delay)

__version__ = "1.1.0"
__all__ = ["enqueue", "process_jobs", "get_job", "cancel_job", "default_queue", "Queue",
           "QueueError", "CorruptLineError", "retry_delay", "__version__"]

_queues: Dict[tuple, Queue] = {}


def default_queue() -> Queue:
    """The Queue the module-level functions use, chosen afresh at every call.

    Its file is ``$DBBASIC_QUEUE_FILE`` or ``data/queue.tsv``, relative to the current
    directory; ``DBBASIC_QUEUE_DURABLE=1`` makes every enqueue fsync.
    """
    path = os.path.abspath(os.environ.get("DBBASIC_QUEUE_FILE") or DEFAULT_PATH)
    durable = os.environ.get("DBBASIC_QUEUE_DURABLE", "").lower() in ("1", "true", "yes")
    key = (path, durable)
    if key not in _queues:
        _queues[key] = Queue(path, durable=durable)
    return _queues[key]


def enqueue(job_type: str, payload: dict, run_at: Optional[float] = None) -> str:
    """Queue a job; return its id. See Queue.enqueue."""
    return default_queue().enqueue(job_type, payload, run_at)


def process_jobs(handlers: Mapping[str, Callable[[dict], Any]],
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, *,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS,
                 max_jobs: Optional[int] = None, max_seconds: Optional[float] = None) -> int:
    """Run the due jobs; return how many ran. See Queue.process_jobs."""
    return default_queue().process_jobs(handlers, max_attempts, lease_seconds=lease_seconds,
                                        max_jobs=max_jobs, max_seconds=max_seconds)


def get_job(job_id: str) -> Optional[Dict[str, Any]]:
    """The job as a dict, or None. See Queue.get_job."""
    return default_queue().get_job(job_id)


def cancel_job(job_id: str) -> bool:
    """Cancel a pending job; True if it was cancelled. See Queue.cancel_job."""
    return default_queue().cancel_job(job_id)
